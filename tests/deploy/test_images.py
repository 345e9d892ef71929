"""Dockerfiles and skaffold.yaml: hadolint is clean, every image builds from the
repository root as a non-root user with pinned dependencies, every skaffold artifact has
its Dockerfile, and every value skaffold sets is one the chart's schema knows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grimp
import pytest
import yaml

from rapport.devstack import images
from tests.service_settings import SERVICE_SETTINGS

if TYPE_CHECKING:
    from tests.deploy.conftest import DeployTools

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SERVICE_DOCKERFILE = REPO / "services" / "Dockerfile"
DOCKERFILES = [
    SERVICE_DOCKERFILE,
    REPO / "models" / "Dockerfile",
    REPO / "models" / "triton.Dockerfile",
    REPO / "models" / "trainer.Dockerfile",
]


def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    return config


def releases(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The helm releases of the base config and of every profile."""
    found: list[dict[str, Any]] = list(config["deploy"]["helm"]["releases"])
    for profile in config.get("profiles", []):
        found += profile.get("deploy", {}).get("helm", {}).get("releases", [])
    return found


def test_hadolint_finds_nothing(deploy: DeployTools) -> None:
    result = deploy.run([deploy.tool("hadolint"), *map(str, DOCKERFILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_service_image_is_multi_stage_pinned_and_unprivileged() -> None:
    text = SERVICE_DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert "COPY constraints.txt" in text
    assert "PIP_CONSTRAINT=/src/constraints.txt" in text
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", text, re.M))
    assert copied == {"constraints.txt", "libs/common", "services/${SERVICE}"}
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'ENTRYPOINT ["rapport-service"]' in text
    assert 'ln -s "rapport-${SERVICE}" /opt/rapport/bin/rapport-service' in text
    assert re.search(r"^EXPOSE \$\{PORT\}$", text, re.M)
    for service in SERVICE_SETTINGS:
        host = f"RAPPORT_{service.upper()}_HOST=0.0.0.0"
        assert host in text, f"services/Dockerfile does not set {host}"
    assert not re.search(r"^(ARG|ENV) .*(KEY|SECRET|PASSWORD|TOKEN)", text, re.M | re.I)


@pytest.mark.parametrize("service", SERVICE_SETTINGS)
def test_skaffold_builds_each_service_from_the_one_dockerfile(service: str) -> None:
    artifacts = {a["image"]: a for a in skaffold()["build"]["artifacts"]}
    docker = artifacts[f"rapport-{service}"]["docker"]
    assert REPO / docker["dockerfile"] == SERVICE_DOCKERFILE
    port = SERVICE_SETTINGS[service].model_fields["port"].default
    assert docker["buildArgs"] == {"SERVICE": service, "PORT": str(port)}
    scripts = (REPO / "services" / service / "pyproject.toml").read_text()
    assert f"rapport-{service} = " in scripts, "the console script the image links to"


def test_the_build_context_lets_in_only_what_the_images_copy() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "**", "deny everything first (.rapport holds the dev API key)"
    assert all(line.startswith(("!", "**/")) for line in lines[1:])
    assert not any(".rapport" in line or ".venv" in line for line in lines[1:])


def test_the_triton_image_has_what_the_models_import_at_the_local_pins() -> None:
    text = (REPO / "models" / "triton.Dockerfile").read_text()
    assert "PIP_CONSTRAINT=/opt/rapport/constraints-triton.txt" in text
    pinned = dict(re.findall(r" ([A-Za-z][\w.-]*)==([\w.]+)", text))
    local = dict(
        line.split("==", 1)
        for line in (REPO / "constraints-triton.txt").read_text().splitlines()
        if "==" in line
    )
    assert set(pinned) == {"onnxruntime", "tokenizers", "vaderSentiment"}
    assert {name: local[name] for name in pinned} == pinned
    assert re.search(r"^USER 10001:10001$", text, re.M)


def test_skaffold_builds_every_service_and_the_models_from_the_repository_root() -> None:
    config = skaffold()
    assert config["apiVersion"].startswith("skaffold/v4beta")
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {f"rapport-{s}" for s in SERVICE_SETTINGS} | {
        "rapport-models",
        "rapport-triton",
        "rapport-trainer",
    }
    for image, artifact in artifacts.items():
        assert artifact["context"] == ".", image
        dockerfile = REPO / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), f"{image}: {dockerfile} does not exist"
    for release in releases(config):
        values = " ".join(release["setValueTemplates"].values())
        for image in artifacts:
            variable = image.replace("-", "_")
            assert f"{{{{.IMAGE_REPO_{variable}}}}}" in values, (release["name"], image)
        assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
        for values_file in release.get("valuesFiles", []):
            assert (REPO / values_file).is_file(), values_file


def test_skaffold_profiles_dev_and_prod_patch_nothing_by_list_position() -> None:
    profiles = {p["name"]: p for p in skaffold()["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    for name, profile in profiles.items():
        for patch in profile.get("patches", []):
            assert not re.search(r"/\d+(/|$)", patch["path"]), (name, patch)
    (dev,) = profiles["dev"]["deploy"]["helm"]["releases"]
    assert dev["valuesFiles"] == ["charts/rapport/values-dev.yaml"]
    (prod,) = profiles["prod"]["deploy"]["helm"]["releases"]
    assert prod["valuesFiles"] == ["charts/rapport/values-prod.yaml"]


def _sample(key: str) -> str:
    """A value of the right shape for what skaffold would put there."""
    if key.endswith(".digest"):
        return "sha256:" + "0" * 64
    if key.endswith(".tag"):
        return "abc1234"
    return "registry.example.com/rapport/image"


def test_every_value_skaffold_sets_exists_in_the_schema(
    deploy: DeployTools, tmp_path: Path
) -> None:
    schema = json.loads((REPO / "charts" / "rapport" / "values.schema.json").read_text())
    for release in releases(skaffold()):
        keys = {**release.get("setValues", {}), **release["setValueTemplates"]}
        values: dict[str, Any] = {}
        for key in keys:
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = _sample(key)
            _assert_in_schema(schema, key)
        path = tmp_path / f"{release['name']}-{len(values)}.json"
        path.write_text(json.dumps(values))
        result = deploy.chart("check-values", str(path))
        assert result.returncode == 0, result.stdout + result.stderr


def _assert_in_schema(schema: dict[str, Any], key: str) -> None:
    node = schema
    for part in key.split("."):
        while "properties" not in node:
            if "allOf" in node:
                node = node["allOf"][0]
            elif "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
            else:
                pytest.fail(f"{key}: the schema has no properties at {part!r}")
        assert part in node["properties"], f"{key}: {part!r} is not in the schema"
        node = node["properties"][part]


@pytest.fixture(scope="module")
def service_graph() -> grimp.ImportGraph:
    return images.service_graph()


@pytest.mark.parametrize("service", images.SERVICES)
def test_each_image_installs_what_its_code_imports_and_no_other_client(
    service: str, service_graph: grimp.ImportGraph
) -> None:
    installed = set(images.install_closure(f"rapport-{service}"))
    imported = images.imported_distributions(service_graph, service)
    assert imported <= installed, f"imported but not declared: {sorted(imported - installed)}"
    clients = set(images.CLIENTS)
    assert installed & clients == imported & clients, (
        f"clients installed but never imported: {sorted((installed - imported) & clients)}"
    )
