"""The benchmarks' py-spy summary: which library each sampled frame belongs to."""

from __future__ import annotations

import pytest

from bench.pyspy import library, summarise

pytestmark = pytest.mark.unit

SITE = "/work/.venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
RESPOND = "/work/services/respond/src/rapport/respond"


def test_a_frame_is_named_by_its_package_rapport_part_or_stdlib_module() -> None:
    assert library(f"StreamWriter._writelines ({SITE}/aiohttp/http_writer.py:116)") == "aiohttp"
    assert library(f"Tracer.start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1171)") == (
        "opentelemetry"
    )
    assert library(f"RespondService.answer ({RESPOND}/service.py:260)") == "rapport.respond"
    assert library(f"Runner.run ({STDLIB}/asyncio/runners.py:118)") == "asyncio"
    assert library("execute (/tmp/repository/intent_classifier/1/model.py:22)") == "model"
    assert library('process 123:"tritonserver --model-repository=x"') == "other"


def test_shares_are_of_samples_self_at_the_leaf_inclusive_anywhere_on_the_stack() -> None:
    app = f"app ({RESPOND}/app.py:1)"
    answer = f"RespondService.answer ({RESPOND}/service.py:260)"
    write = f"StreamWriter.write ({SITE}/aiohttp/http_writer.py:104)"
    parse = f"BaseModel.model_validate_json ({SITE}/pydantic/main.py:847)"
    collapsed = "\n".join(
        [
            f"{app};{answer};{write} 6",
            f"{app};{answer};{parse} 3",
            f"{app} 1",
            "garbage line",
        ]
    )
    summary = summarise(collapsed)
    assert summary.samples == 10
    assert summary.self_share == {"aiohttp": 0.6, "pydantic": 0.3, "rapport.respond": 0.1}
    assert summary.inclusive_share["rapport.respond"] == 1.0
    assert summary.top(2) == {
        "aiohttp": {"self": 0.6, "inclusive": 0.6},
        "pydantic": {"self": 0.3, "inclusive": 0.3},
    }
    assert summarise("").samples == 0
