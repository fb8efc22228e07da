"""The pipeline deployment on the sample crawl, through a real server and process workers."""

from __future__ import annotations

import time
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.report import descendants
from tasks import lake
from tasks.config import load_config

pytestmark = pytest.mark.e2e

# The tiny preset, made smaller where it only costs time: the e2e test proves the wiring.
E2E_OVERRIDES = {
    "sample_crawl.pages": 120,
    "sample_crawl.files": 2,
    "sft.train.steps": 10,
    "sft.train.eval_every": 5,
    "sft.train.checkpoint_every": 10,
    "evaluate.limits": {"math": 2, "fact": 2, "unknown": 2, "harmful": 1, "private": 1, "benign": 1},
}


def e2e_config(lake_root: str) -> dict:
    return load_config("tiny", {**E2E_OVERRIDES, "lake.root": lake_root}).model_dump(mode="json")


def task_runs(client, flow_run_ids: list[uuid.UUID]) -> list:
    return client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=flow_run_ids)), limit=200)


def settled(client, flow_run_ids, timeout=60):
    """Task-run states reach the server asynchronously: wait until none is still running."""
    deadline = time.monotonic() + timeout
    while True:
        runs = task_runs(client, flow_run_ids)
        if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def test_pipeline_deployment_end_to_end_then_all_cache_hits(stack):
    config = e2e_config(str(stack.lake))
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        first = run_deployment("pipeline/pipeline", parameters={"config": config}, timeout=1200, poll_interval=3)
        assert first.state.is_completed(), f"pipeline ended {first.state.name}: see {stack.logs}"

        # The lake holds every stage's datasets, each committed with a manifest.
        datasets = {u.removeprefix(str(stack.lake) + "/") for u in lake.list_datasets(str(stack.lake))}
        for expected in ("crawls/sample/truth", "curated/sample/clean", "curated/sample/removed"):
            assert expected in datasets, sorted(datasets)
        assert any(d.startswith("tokens/") and d.endswith("/train") for d in datasets)

        with get_client(sync_client=True) as client:
            keys = {a.key for a in client.read_artifacts() if a.key}
            assert {"curate-funnel", "curate-report", "tokenize-counts", "pipeline-report-card"} <= keys

            second = run_deployment("pipeline/pipeline", parameters={"config": config}, timeout=600, poll_interval=3)
            assert second.state.is_completed()
            flows = descendants(client, second.id)
            runs = settled(client, [r.id for r in flows])
            subflow_slots = {f.parent_task_run_id for f in flows}  # a subflow's placeholder task run
            lake_tasks = [r for r in runs if r.id not in subflow_slots and not r.name.startswith("asset ")]
            assert lake_tasks, "the second run ran no tasks at all"
            not_cached = sorted({r.name.rsplit("-", 1)[0] for r in lake_tasks if r.state.name != "Cached"})
            assert not_cached == [], f"tasks that did work on a re-run: {not_cached}"
