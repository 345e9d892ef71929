"""`make chaos` in miniature: the stream rows (poison, duplicates + replay, erasure + replay)
and the knowledge indexer's kill -9 row at small counts, so the harness keeps working
between full runs. About 15 s, and 20 s for the knowledge row (Triton starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapport.chaos import Scale, run_matrix, table
from rapport.devstack import processes
from rapport.devstack.processes import ProcessHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = Scale(poison_events=500, replay_events=300, replay_users=30, erase_events=100)


async def test_the_stream_rows_pass_and_leave_nothing_running(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    spawned: list[ProcessHandle] = []
    rows = await run_matrix(
        SMALL,
        work=tmp_path,
        repo_root=pytestconfig.rootpath,
        spawned=spawned,
        only={"7", "8", "9"},
        say=lambda _: None,
    )
    print(table(rows))
    assert [row.number for row in rows] == ["7", "8", "9"]
    assert all(row.passed for row in rows), table(rows)
    assert rows[0].figures["poison"] == rows[0].figures["on DLQ"] == 5
    assert spawned, "the matrix started its own servers"
    assert not [h.name for h in spawned if processes.is_running(h)]


async def test_the_knowledge_kill_row_passes_and_leaves_nothing_running(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    spawned: list[ProcessHandle] = []
    rows = await run_matrix(
        Scale(knowledge_documents=300, kills=2),
        work=tmp_path,
        repo_root=pytestconfig.rootpath,
        spawned=spawned,
        only={"10"},
        say=lambda _: None,
    )
    print(table(rows))
    (row,) = rows
    assert row.passed, table(rows)
    assert row.figures["kills"] == 2
    assert row.figures["found"] == row.figures["chunks expected"] > 0
    assert not [h.name for h in spawned if processes.is_running(h)]
