"""``rapport-experiments``: check an experiments file, or print reports as tables.

    rapport-experiments check experiments.yaml
    rapport-experiments report [NAME] --url http://127.0.0.1:8082 (key: $RAPPORT_API_KEY)

The report is profile's ``GET /v1/experiments[/{name}]`` for the key's tenant; the key
needs the ``experiments:read`` scope.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from rapport.common.experiments import (
    ExperimentFileError,
    ExperimentList,
    ExperimentReport,
    Interval,
    VariantResult,
    load_experiments,
)

DEFAULT_URL = "http://127.0.0.1:8082"
TIMEOUT_S = 30.0


def _percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pt"


def _interval(interval: Interval | None, *, signed: bool = False) -> str:
    if interval is None:
        return "-"
    sign = "+" if signed else ""
    return f"[{interval[0] * 100:{sign}.1f}, {interval[1] * 100:{sign}.1f}]"


COLUMNS = (
    "variant",
    "share",
    "users",
    "conv",
    "rate",
    "95% CI",
    "diff",
    "always-valid 95%",
    "lift",
    "P(beat)",
    "",
)


def _row(result: VariantResult) -> list[str]:
    beat = result.probability_to_beat_control
    return [
        result.variant,
        f"{result.expected_share * 100:.0f}%",
        str(result.users),
        str(result.conversions),
        _percent(result.rate),
        _interval(result.rate_interval),
        _points(result.difference),
        _interval(result.difference_interval, signed=True),
        _percent(result.lift, signed=True),
        "-" if beat is None else f"{beat:.3f}",
        "significant" if result.significant else "",
    ]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def render(report: ExperimentReport) -> str:
    """The report as a person at a terminal reads it."""
    lines = [
        f"{report.name}  ({report.status}, {report.start:%Y-%m-%d %H:%M} to "
        f"{report.stop:%Y-%m-%d %H:%M} UTC; control: {report.control}; "
        f"window {report.attribution_window_hours:g} h)",
    ]
    if report.description:
        lines.append(f"  {report.description}")
    lines.append(f"  verdict: {report.verdict}")
    for kpi in report.kpis:
        better = "lower is better" if kpi.lower_is_better else "higher is better"
        lines.append(f"\n  {kpi.kpi} ({kpi.role}, {better})")
        lines.extend("    " + line for line in _table([COLUMNS, *(_row(v) for v in kpi.variants)]))
    srm = report.sample_ratio
    state = "MISMATCH" if srm.mismatch else "ok"
    p_value = "too few users yet" if srm.p_value is None else f"p = {srm.p_value:.3g}"
    lines.append(f"\n  sample ratio: {p_value} ({state}; mismatch below p = {srm.threshold:g})")
    return "\n".join(lines)


def _get(url: str, key: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise urllib.error.URLError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310 - checked above
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def report_cli(name: str | None, url: str, key: str) -> int:
    base = url.rstrip("/")
    try:
        if name is None:
            listed = ExperimentList.model_validate_json(_get(f"{base}/v1/experiments", key))
            reports = listed.experiments
        else:
            reports = [
                ExperimentReport.model_validate_json(_get(f"{base}/v1/experiments/{name}", key))
            ]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            detail = json.loads(detail).get("detail", detail)
        print(f"{exc.code} from {exc.url}: {detail}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach {base}: {exc.reason}", file=sys.stderr)
        return 1
    if not reports:
        print("no experiments are configured")
    print("\n\n".join(render(r) for r in reports))
    return 0


def check_cli(path: Path) -> int:
    try:
        experiments = load_experiments(path)
    except ExperimentFileError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 1
    names = ", ".join(e.name for e in experiments.experiments) or "none"
    print(f"{path}: ok ({len(experiments.experiments)} experiments: {names})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rapport-experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate an experiments YAML file")
    check.add_argument("file", type=Path)
    report = sub.add_parser("report", help="print experiment reports as tables")
    report.add_argument("name", nargs="?", help="one experiment; all when left out")
    report.add_argument("--url", default=DEFAULT_URL, help=f"profile's URL ({DEFAULT_URL})")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_cli(args.file)
    key = os.environ.get("RAPPORT_API_KEY")
    if not key:
        print("set RAPPORT_API_KEY to a key with the experiments:read scope", file=sys.stderr)
        return 2
    return report_cli(args.name, args.url, key)


if __name__ == "__main__":
    raise SystemExit(main())
