"""Prefect conventions against the real Prefect test server: cache hits on content identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow

from tasks import lake
from tasks.runtime import RunnerConfig, _retryable, code_version, content_key, in_lake, lake_task, task_runner

CALLS: list[str] = []


@lake_task(inputs=("src",), code=("tasks.lake",))
def count_lines(src: str, note: str) -> dict:
    CALLS.append(src)
    fs, path = lake.filesystem(src)
    return {"lines": fs.cat_file(path).count(b"\n"), "note": note}


@flow
def count_flow(lake_root: str, src: str, note: str = "x") -> dict:
    return in_lake(lake_root, count_lines)(src, note)


def test_cache_hit_on_same_input_and_work_on_changed_input(prefect_server, tmp_path):
    root = str(tmp_path / "lake")
    src = tmp_path / "input.txt"
    src.write_text("a\nb\n")
    CALLS.clear()
    assert count_flow(root, str(src)) == {"lines": 2, "note": "x"}
    assert count_flow(root, str(src)) == {"lines": 2, "note": "x"}
    assert len(CALLS) == 1, "same input identity must be a cache hit"
    assert (Path(root) / "_prefect" / "results").is_dir(), "results persist in the lake"

    src.write_text("a\nb\nc\n")  # new content: new size and mtime, so a new identity
    assert count_flow(root, str(src)) == {"lines": 3, "note": "x"}
    assert len(CALLS) == 2
    assert count_flow(root, str(src), note="y")["note"] == "y"
    assert len(CALLS) == 3, "a changed small parameter is a changed key"


def test_key_depends_on_identity_and_code_not_on_data(tmp_path):
    key = content_key(inputs=("src",), code=("tasks.lake",))
    src = tmp_path / "f"
    src.write_text("hello")
    k1 = key(None, {"src": str(src), "n": 1})
    assert k1 == key(None, {"src": str(src), "n": 1})
    assert k1 != key(None, {"src": str(src), "n": 2})
    assert "/" not in k1
    other = content_key(inputs=("src",), code=("tasks.runtime",))
    assert other(None, {"src": str(src), "n": 1}) != k1
    assert code_version("tasks.lake") == code_version("tasks.lake")


def test_only_storage_errors_are_retried():
    assert _retryable(ConnectionResetError())
    assert _retryable(TimeoutError())
    assert not _retryable(ValueError("a bug"))
    assert not _retryable(lake.DatasetNotFound("missing"))
    assert not _retryable(KeyError("x"))


def test_runner_from_config_is_bounded():
    runner = task_runner(RunnerConfig(kind="threads", max_workers=3))
    assert runner._max_workers == 3
    with pytest.raises(ValueError):
        task_runner(RunnerConfig.model_construct(kind="nope"))
