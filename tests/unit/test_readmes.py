"""The READMEs say what the code does, where a machine can check it.

- each service README's environment table is its settings class: every variable,
  nothing else, with the default the code has;
- the root README names every shared variable (``rapport.common``'s settings);
- the root README's ``stack.json`` example has the keys ``rapport-dev up`` writes;
- the bench lists name every benchmark ``make bench`` runs, and only benches that exist;
- the root README names every Makefile target and, under "Where things live", every
  package;
- every repository path the READMEs name in backticks (or link to) exists.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from rapport.common.settings import env_vars
from rapport.devstack import servers, stack, triton
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.servers import RunningServer, ServerSpec
from tests.service_settings import SERVICE_SETTINGS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ROOT_README = REPO / "README.md"
# Paths the READMEs name that are made by running something, or live outside the
# repository (the team's shared folder): not checked.
NOT_IN_THE_REPOSITORY = (".rapport/", "bench/results/", "../shared/")
BACKTICKED = re.compile(r"`([^`\n]+)`")
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line), up to the next heading of
    the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def first_cells(text: str) -> list[str]:
    """The first cell of every table row, header and rule rows left out."""
    cells = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            cells.append(line.split("|")[1].strip())
    return cells[1:] if cells else cells


def documented_environment(readme: str) -> dict[str, str]:
    """The "## Environment" table: variable -> its default column."""
    table: dict[str, str] = {}
    for line in section(readme, "## Environment").splitlines():
        row = re.match(r"^\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|", line)
        if row:
            assert row[1] not in table, f"{row[1]} is listed twice"
            table[row[1]] = row[2].strip()
    return table


def same_default(documented: str, default: str) -> bool:
    """``(unset)``, ``unset`` and ``empty`` document no default; numbers compare as
    numbers (``15`` documents ``15.0``), booleans as the lowercase the env takes."""
    written = documented.strip("`")
    if written in {"(unset)", "unset", "empty"}:
        written = ""
    if default in {"True", "False"}:
        default = default.lower()
    if written == default:
        return True
    try:
        return float(written) == float(default)
    except ValueError:
        return False


@pytest.mark.parametrize(("service", "settings_cls"), SERVICE_SETTINGS.items())
def test_service_readme_environment_table_is_its_settings(
    service: str, settings_cls: type[BaseSettings]
) -> None:
    table = documented_environment(read(REPO / "services" / service / "README.md"))
    variables = env_vars(settings_cls)
    assert sorted(set(variables) - set(table)) == [], f"services/{service}/README.md lacks them"
    assert sorted(set(table) - set(variables)) == [], (
        f"services/{service}/README.md lists variables {settings_cls.__name__} does not read"
    )
    wrong = {
        var: (table[var], default)
        for var, default in variables.items()
        if not same_default(table[var], default)
    }
    assert not wrong, f"services/{service}/README.md: (documented, code) defaults {wrong}"


def shared_variables() -> set[str]:
    """Variables read under one unprefixed name by every service that has them: the
    aliased fields of the settings classes in rapport.common."""
    found = set()
    for settings_cls in SERVICE_SETTINGS.values():
        for name, field in settings_cls.model_fields.items():
            declared_in = next(
                base for base in settings_cls.__mro__ if name in inspect.get_annotations(base)
            )
            if isinstance(field.validation_alias, str) and declared_in.__module__.startswith(
                "rapport.common."
            ):
                found.add(field.validation_alias)
    return found


def test_root_readme_names_every_shared_variable() -> None:
    readme = read(ROOT_README)
    missing = sorted(var for var in shared_variables() if f"`{var}`" not in readme)
    assert missing == [], f"README.md does not name the shared variables {missing}"


@pytest.fixture
def written_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``rapport-dev up`` writes, from ``stack.up`` itself with nothing started: a
    server "starts" as a handle, no binary is looked for and no topic is made."""

    def start(spec: ServerSpec, log_dir: Path) -> RunningServer:
        log_path = str(log_dir / f"{spec.name}.log")
        return RunningServer(spec, ProcessHandle(spec.name, 1, 0.0, tuple(spec.argv), log_path))

    async def no_topics(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(servers, "start", start)
    monkeypatch.setattr(servers, "console_script", lambda name: name)
    monkeypatch.setattr(servers, "tansu_binary", lambda: "tansu")
    monkeypatch.setattr(servers, "redis_binary", lambda: "redis-server")
    monkeypatch.setattr(triton, "find_triton_venv", lambda start=None: tmp_path)
    monkeypatch.setattr(
        triton, "prepare_triton", lambda venv: (Path("tritonserver"), Path("backends"), {})
    )
    monkeypatch.setattr(stack, "ensure_topics", no_topics)
    repository = tmp_path / "repository"
    (repository / stack.KNOWLEDGE_NEEDS_MODEL).mkdir(parents=True)  # knowledge starts too
    home = tmp_path / ".rapport"
    stack.up(stack.StackConfig(home=home, model_repository=repository))
    written: dict[str, Any] = json.loads(read(stack.stack_path(home)))
    return written


def test_root_readme_stack_json_has_the_keys_up_writes(written_stack: dict[str, Any]) -> None:
    block = re.search(
        r"```json\n(.*?)```", section(read(ROOT_README), "### `.rapport/stack.json`"), re.DOTALL
    )
    assert block, "README.md has no stack.json example"
    example = json.loads(block[1])
    assert set(example) == set(written_stack)
    assert set(example["infra"]) == set(written_stack["infra"])
    assert set(example["services"]) == set(written_stack["services"])
    a_process = next(iter(written_stack["processes"].values()))
    assert set(example["processes"]["kafka"]) == set(a_process)


@cache
def makefile() -> str:
    return read(REPO / "Makefile")


def make_bench_modules() -> list[str]:
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", makefile(), re.MULTILINE)
    assert recipe, "the Makefile has no bench target"
    return re.findall(r"-m bench\.(\w+)", recipe[1])


def listed_benches() -> dict[str, set[str]]:
    """The bench modules each list names: bench/README.md's script table, and the
    root README's "Measured" paragraph on what `make bench` runs."""
    bench_readme = read(REPO / "bench" / "README.md")
    table = next(
        part for part in bench_readme.split("\n\n") if part.startswith("| script | what it")
    )
    measured = section(read(ROOT_README), "## Measured").strip().split("\n\n")[0]
    return {
        "bench/README.md": {
            m for cell in first_cells(table) for m in re.findall(r"^`(\w+)\.py`$", cell)
        },
        "README.md": set(re.findall(r"`(?:bench/)?(\w+)\.py`", measured)),
    }


def test_every_bench_make_bench_runs_is_listed() -> None:
    listed = set().union(*listed_benches().values())
    unlisted = [module for module in make_bench_modules() if module not in listed]
    assert unlisted == [], f"make bench runs {unlisted}, which no bench list names"


def test_every_listed_bench_exists() -> None:
    for readme, modules in listed_benches().items():
        assert modules, f"{readme}: no bench list found"
        missing = sorted(m for m in modules if not (REPO / "bench" / f"{m}.py").is_file())
        assert missing == [], f"{readme} lists benches that do not exist: {missing}"


def test_root_readme_names_every_make_target() -> None:
    phony = re.search(r"^\.PHONY: (.*)$", makefile(), re.MULTILINE)
    assert phony
    named = set(re.findall(r"`make ([a-z-]+)", read(ROOT_README)))
    assert sorted(set(phony[1].split()) - named) == []


def test_where_things_live_lists_every_package() -> None:
    packages = re.search(r"^PACKAGES := (.*)$", makefile(), re.MULTILINE)
    assert packages
    table = section(read(ROOT_README), "## Where things live")
    listed = {path.rstrip("/") for cell in first_cells(table) for path in BACKTICKED.findall(cell)}
    assert sorted(set(packages[1].split()) - listed) == []


def documents() -> list[Path]:
    return [
        ROOT_README,
        *sorted(REPO.glob("services/*/README.md")),
        *sorted(REPO.glob("libs/*/README.md")),
        REPO / "bench" / "README.md",
        *sorted(REPO.glob("docs/*.md")),
        REPO / "tests" / "e2e" / "README.md",
    ]


def looks_like_a_path(text: str) -> bool:
    """``dir/file.ext`` or ``dir/``: not a command, a URL, an API route or a pattern."""
    if re.search(r"\s|://|\.\.\.|[<>{}*|$]", text) or text.startswith("/") or "/" not in text:
        return False
    return text.endswith("/") or re.search(r"\.[A-Za-z][A-Za-z0-9]*$", text) is not None


def candidates(document: Path, path: str) -> list[Path]:
    """Where ``path`` may be, as ``document`` names it: from the repository root, from
    the document's folder, or inside a service's package (``domain/pii.py`` in that
    service's README, ``profile/domain/reducer.py`` anywhere)."""
    found = [REPO / path, document.parent / path]
    if document.parent.parent == REPO / "services":
        found.append(document.parent / "src" / "rapport" / document.parent.name / path)
    head, _, rest = path.partition("/")
    if head in SERVICE_SETTINGS:
        found.append(REPO / "services" / head / "src" / "rapport" / head / rest)
    return found


@pytest.mark.parametrize("document", documents(), ids=lambda d: str(d.relative_to(REPO)))
def test_every_path_a_readme_names_exists(document: Path) -> None:
    prose = FENCED.sub("", read(document))  # code blocks are commands and diagrams
    named = {text for text in BACKTICKED.findall(prose) if looks_like_a_path(text)}
    named |= {
        target.split("#")[0]
        for target in LINK.findall(prose)
        if not re.match(r"^(#|[a-z]+:)", target)
    }
    missing = sorted(
        path
        for path in named
        if not path.startswith(NOT_IN_THE_REPOSITORY)
        and not any(candidate.exists() for candidate in candidates(document, path))
    )
    assert missing == [], f"{document.relative_to(REPO)} names paths that do not exist"
