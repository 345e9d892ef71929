from __future__ import annotations

import json
from pathlib import Path

import pytest

from rapport.common.auth import ApiKeyStore, AuthSettings, generate_key, hash_key, key_entry, main

pytestmark = pytest.mark.unit


def test_store_holds_hashes_and_authenticates_the_key() -> None:
    token = generate_key("test")
    entry = key_entry(token, key_id="k1", tenant="acme", scopes=["events:write"])
    assert token not in entry.model_dump_json()
    assert entry.sha256 == hash_key(token)
    store = ApiKeyStore([entry])
    found = store.authenticate(token)
    assert found is not None
    assert (found.id, found.tenant, found.scopes) == ("k1", "acme", frozenset({"events:write"}))
    assert store.authenticate(token + "x") is None
    assert store.authenticate("") is None


def test_store_loads_from_env_json_and_from_a_file(tmp_path: Path) -> None:
    a, b = generate_key(), generate_key()
    entries = [
        key_entry(a, key_id="a", tenant="t1", scopes=["events:write"]),
        key_entry(b, key_id="b", tenant="t2", scopes=["respond:invoke"]),
    ]
    as_json = [e.model_dump(mode="json") for e in entries]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(as_json[1:]))
    settings = AuthSettings(api_keys=json.dumps(as_json[:1]), api_keys_file=path)
    store = ApiKeyStore.from_settings(settings)
    assert len(store) == 2
    assert store.authenticate(b) is not None


def test_a_malformed_entry_is_refused() -> None:
    bad = json.dumps([{"id": "x", "sha256": "not-hex", "tenant": "t", "scopes": []}])
    with pytest.raises(ValueError, match="sha256"):
        ApiKeyStore.from_settings(AuthSettings(api_keys=bad))


def test_cli_prints_a_key_and_an_entry_that_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    main(["new", "--tenant", "acme", "--scope", "events:write", "--id", "acme-web"])
    out = capsys.readouterr().out.splitlines()
    token = out[0].removeprefix("key (shown once): ")
    entry = json.loads(out[2])
    store = ApiKeyStore.from_settings(AuthSettings(api_keys=json.dumps([entry])))
    key = store.authenticate(token)
    assert key is not None
    assert key.id == "acme-web"
