"""The watch flow: a crawl root where a second crawl appears starts the pipeline for it only."""

from __future__ import annotations

import shutil

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from flows.curate import curate
from flows.pipeline import pipeline
from flows.watch import watch
from tasks import crawls
from tasks.config import load_config


def test_watch_starts_the_pipeline_for_the_new_crawl_only(prefect_server, shared_data, tmp_path):
    real = shared_data / "warc" / "commoncrawl-sample" / "warcfile.warc.gz"
    root, lake_root = tmp_path / "crawlroot", tmp_path / "lake"
    (root / "crawl-a").mkdir(parents=True)
    shutil.copy(real, root / "crawl-a" / "part-0.warc.gz")
    config = load_config("tiny", {"lake.root": str(lake_root), "curate.dedup_enabled": False})
    curate(warcs=[str(root / "crawl-a")], lake=config.lake, config=config.curate)  # crawl-a is done
    assert crawls.uncurated(str(root), str(lake_root)) == {}

    (root / "crawl-b").mkdir()
    shutil.copy(real, root / "crawl-b" / "part-0.warc.gz")
    deployment_id = pipeline.to_deployment(name="pipeline").apply()  # registered, no worker needed

    result = watch(crawl_root=str(root), config=config)
    assert [s["crawl"] for s in result["started"]] == ["crawl-b"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert len(runs) == 1
    params = runs[0].parameters
    assert params["config"]["curate"]["crawl"] == "crawl-b"
    assert params["warcs"] == [str(root / "crawl-b" / "part-0.warc.gz")]
    assert params["config"]["lake"]["root"] == str(lake_root)
