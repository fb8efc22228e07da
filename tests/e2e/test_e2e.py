"""End to end, through a real server, deployments and process workers: the pipeline deployment
on the sample crawl (twice: the second all cache hits), the landed-crawl event, cancellation,
the server on loopback, and the UI in a browser.

One module, so that xdist (`--dist loadfile`) runs all of it in one worker on one stack."""

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
from prefect.states import Cancelling

from flows.report import descendants
from models import lake
from tests.e2e.conftest import e2e_config
from tests.e2e.ui import check_ui, latest_runs
from tests.test_reliability_security import LOOPBACK, listening, tree

pytestmark = pytest.mark.e2e

GPU_STAGES = ("pretrain", "sft", "evaluate", "rl")


def task_runs(client, flow_run_ids: list[uuid.UUID]) -> list:
    return client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=flow_run_ids)), limit=200
    )


def settled(client, flow_run_ids, timeout=60):
    """Task-run states reach the server asynchronously: wait until none is still running."""
    deadline = time.monotonic() + timeout
    while True:
        runs = task_runs(client, flow_run_ids)
        if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def test_the_local_prefect_server_listens_on_loopback(stack):
    port = int(stack.api_url.rsplit(":", 1)[1].split("/")[0])
    pid = int((stack.logs / "server.pid").read_text())
    sockets = listening(tree(pid))
    assert any(p == port for _, p, _ in sockets), sockets
    assert all(ip in LOOPBACK for ip, _, _ in sockets), sockets
    assert stack.api_url.startswith("http://127.0.0.1:")


def test_pipeline_deployment_end_to_end_then_all_cache_hits(stack, pipeline_runs):
    first, second = pipeline_runs
    assert first.state.is_completed(), f"pipeline ended {first.state.name}: see {stack.logs}"

    # The lake holds every stage's datasets, each committed with a manifest.
    datasets = {u.removeprefix(str(stack.lake) + "/") for u in lake.list_datasets(str(stack.lake))}
    for expected in ("crawls/sample/truth", "curated/sample/clean", "curated/sample/removed"):
        assert expected in datasets, sorted(datasets)
    assert any(d.startswith("tokens/") and d.endswith("/train") for d in datasets)
    assert any(d.startswith("rollouts/sample/rl/") for d in datasets)  # named by the run (the crawl's name)

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        # The training stages ran as their deployments' runs on the gpu pool, as subflows.
        pools: dict[str, set] = {}
        for run in descendants(client, first.id):
            pools.setdefault(client.read_flow(run.flow_id).name, set()).add(run.work_pool_name)
        for stage in GPU_STAGES:
            assert pools.get(stage) == {"gpu"}, pools
        assert pools["curate"] == {None}  # data stages run in the pipeline's own process

        keys = {a.key for a in client.read_artifacts() if a.key}
        assert {
            "curate-funnel-sample",
            "curate-report-sample",
            "tokenize-counts-sample-sample",
            "rl-pass-at-1-sample",
            "pipeline-report-card-sample",
        } <= keys

        # The second run on the same crawl: every lake task is a cache hit.
        assert second.state.is_completed(), f"second pipeline ended {second.state.name}: see {stack.logs}"
        flows = descendants(client, second.id)
        runs = settled(client, [r.id for r in flows])
        subflow_slots = {f.parent_task_run_id for f in flows}  # a subflow's placeholder task run
        lake_tasks = [r for r in runs if r.id not in subflow_slots and not r.name.startswith("asset ")]
        assert lake_tasks, "the second run ran no tasks at all"
        not_cached = sorted({r.name.rsplit("-", 1)[0] for r in lake_tasks if r.state.name != "Cached"})
        assert not_cached == [], f"tasks that did work on a re-run: {not_cached}"


def test_a_landed_crawl_event_starts_curation(stack, shared_data):
    """`crawl2chat crawl-landed URI` emits the event; the curate deployment's trigger runs it."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    crawl = stack.lake.parent / "incoming" / "cc-sample"
    crawl.mkdir(parents=True)
    shutil.copy(shared_data / "warc" / "commoncrawl-sample" / "warcfile.warc.gz", crawl / "part-0.warc.gz")
    landed = subprocess.run(
        [str(Path(sys.executable).parent / "crawl2chat"), "crawl-landed", str(crawl)],
        env=stack.env,
        text=True,
        capture_output=True,
    )
    assert landed.returncode == 0, landed.stderr
    clean = lake.join(str(stack.lake), "curated", "cc-sample", "clean")
    deadline = time.monotonic() + 300
    while not lake.exists(clean):
        assert time.monotonic() < deadline, f"no curation after the event: see {stack.logs}"
        time.sleep(2)
    from tasks.lineage import leaves, trace

    assert leaves(trace(clean)) == [str(crawl / "part-0.warc.gz")]  # curated from the landed file


def test_cancelling_the_pipeline_cancels_its_training_run(stack, pipeline_runs):
    # (after the pipeline runs: a cancelled training run must not hold the gpu slot they need)
    """The pipeline waits on pretrain's deployment run; cancelling the pipeline cancels it."""
    config = e2e_config(str(stack.lake), {"pretrain.name": "long", "pretrain.train.steps": 100_000})
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        parent = run_deployment("pipeline/pipeline", parameters={"config": config}, timeout=0)
        child = wait_for(
            lambda: next(
                (
                    r
                    for r in descendants(client, parent.id)
                    if client.read_flow(r.flow_id).name == "pretrain" and r.state.is_running()
                ),
                None,
            ),
            timeout=180,
            what=f"a running pretrain subflow: see {stack.logs}",
        )
        client.set_flow_run_state(parent.id, Cancelling(), force=True)
        final = wait_for(
            lambda: (r := client.read_flow_run(child.id)).state.is_final() and r,
            timeout=180,
            what=f"pretrain's run to end after the cancel: see {stack.logs}",
        )
        assert final.state.is_cancelled(), final.state
        assert wait_for(
            lambda: client.read_flow_run(parent.id).state.is_cancelled(), timeout=60, what="the pipeline cancelled"
        )


def wait_for(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return found


def test_ui_shows_runs_subflows_tasks_form_and_report_card(stack, pipeline_runs):
    check_ui(stack.ui_url, latest_runs(stack.api_url))


def test_watch_runs_two_new_crawls_in_parallel_each_in_its_own_run(stack, pipeline_runs, tmp_path):
    """Two crawls land under the crawl root; watch starts a pipeline deployment run for each
    at once (process workers), and each finishes with its own run: nothing of one overwritten."""
    from flows.watch import watch
    from tasks.config import PipelineConfig, SampleCrawlConfig
    from tasks.layout import Layout
    from tasks.sample_crawl import commit_crawl, files, write_warc_file

    crawl_lake = str(tmp_path / "landing")  # the sample crawl writer lays crawls out as {root}/crawls/{name}/*.warc.gz
    for name, seed in (("landed-a", 11), ("landed-b", 12)):
        config = SampleCrawlConfig(
            name=name, seed=seed, pages=240, files=1
        )  # enough clean documents for a validation split
        commit_crawl.fn(
            crawl_lake, config, [write_warc_file.fn(crawl_lake, config, i) for i in range(len(files(config)))]
        )
    crawl_root = lake.join(crawl_lake, "crawls")
    config = PipelineConfig.model_validate(e2e_config(str(stack.lake)))
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        result = watch(crawl_root=crawl_root, config=config, wait=True)
    assert sorted(s["crawl"] for s in result["started"]) == ["landed-a", "landed-b"]
    assert all(s["state"] == "Completed" for s in result["started"]), result
    layout = Layout(str(stack.lake))
    for crawl in ("landed-a", "landed-b"):
        sft = layout.model(f"{crawl}/sft")
        assert layout.search_for(sft) == layout.search(crawl)  # its own crawl's index, through its lineage
        assert lake.exists(layout.evals(sft)) and lake.exists(layout.tokenizer(crawl, config.tokenizer.name))
    assert layout.model("landed-a/sft") != layout.model("landed-b/sft")
