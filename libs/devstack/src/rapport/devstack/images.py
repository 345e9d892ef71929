"""What each service's image installs, and what its code imports.

An image is ``pip install ./libs/common ./services/<name>`` (services/Dockerfile), so
its packages are the dependency closure of ``rapport-<name>``, extras included, as
the installed metadata declares it. What the code needs is the third-party modules
reachable from ``rapport.<name>`` in the import graph (grimp, as import-linter
builds it), through ``rapport.common``. tests/deploy/test_images.py holds the two
together; ``python -m rapport.devstack.images`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import grimp
from packaging.markers import default_environment
from packaging.requirements import Requirement

SERVICES = ("ingest", "profile", "recommend", "respond", "knowledge")
# The clients an image should hold only when its service talks to that system.
CLIENTS = ("aiohttp", "aiokafka", "pymilvus", "pymongo", "redis", "tritonclient")
# Namespace packages shared by many distributions: which one a module is cannot be
# told from its top-level name.
NAMESPACES = frozenset({"opentelemetry"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_closure(requirement: str) -> dict[str, metadata.Distribution]:
    """Every distribution ``pip install <requirement>`` brings (``rapport-common[redis]``,
    say), by canonical name."""
    environment: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    root = Requirement(requirement)
    todo: list[tuple[str, tuple[str, ...]]] = [(root.name, tuple(sorted(root.extras)))]
    while todo:
        name, extras = todo.pop()
        if (canonical(name), extras) in seen:
            continue
        seen.add((canonical(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-gated requirement of another platform
        found[canonical(name)] = dist
        for line in dist.requires or []:
            needed = Requirement(line)
            marker = needed.marker
            wanted = ("", *extras)
            if marker is None or any(marker.evaluate(environment | {"extra": e}) for e in wanted):
                todo.append((needed.name, tuple(sorted(needed.extras))))
    return found


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def imported_distributions(graph: grimp.ImportGraph, service: str) -> set[str]:
    """The third-party distributions ``rapport.<service>``'s code imports, transitively."""
    modules = graph.find_upstream_modules(f"rapport.{service}", as_package=True)
    top_level = {m.split(".")[0] for m in modules if not m.startswith("rapport.")}
    providers = metadata.packages_distributions()
    names = top_level - set(sys.stdlib_module_names) - NAMESPACES
    return {canonical(d) for name in names for d in providers.get(name, [name])}


def service_graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "rapport.common",
        *(f"rapport.{s}" for s in SERVICES),
        include_external_packages=True,
        exclude_type_checking_imports=True,
    )


@dataclass
class ImageRow:
    packages: int
    installed_mb: float
    clients: list[str]  # the CLIENTS the image installs
    imports_clients: list[str]  # the CLIENTS its code imports
    largest_mb: dict[str, float]


def table() -> dict[str, ImageRow]:
    graph = service_graph()
    rows: dict[str, ImageRow] = {}
    for service in SERVICES:
        closure = install_closure(f"rapport-{service}")
        sizes = {name: installed_bytes(dist) for name, dist in closure.items()}
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:8]
        rows[service] = ImageRow(
            packages=len(closure),
            installed_mb=round(sum(sizes.values()) / 1e6, 1),
            clients=[c for c in CLIENTS if c in closure],
            imports_clients=sorted(imported_distributions(graph, service) & set(CLIENTS)),
            largest_mb={name: round(size / 1e6, 1) for name, size in largest},
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    rows = table()
    for service, row in rows.items():
        clients = ", ".join(row.clients) or "-"
        print(f"{service:<10} {row.packages:>3} packages {row.installed_mb:>6} MB  {clients}")
    if args.json:
        document = {service: asdict(row) for service, row in rows.items()}
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
