"""Re-runs on new crawls: look at a crawl root, start the pipeline for every crawl the lake has
not curated yet, each as its own run (named after its crawl, so runs never overwrite each other).

A crawl root is a folder of crawl folders, a folder of WARC files (one crawl, named after the
folder) or Common Crawl's layout (tasks/crawls.py); the run's log says what it found.

Deployed on a cron schedule (deployments/prefect.yaml), it is the backstop of the event path:
a crawler that emits `crawl2chat.crawl.landed` with the crawl's URI starts curation at once
(`crawl2chat crawl-landed URI` emits it). Running again over crawls already done finds nothing
to do; a pipeline started twice on one crawl is all cache hits.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from models import lake
from tasks import crawls
from tasks.config import PipelineConfig

PIPELINE_DEPLOYMENT = "pipeline/pipeline"
LANDED = "crawl2chat.crawl.landed"


def _pipeline_deployment() -> Any:
    """The pipeline's deployment, when one is registered on the server."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(PIPELINE_DEPLOYMENT)
        except ObjectNotFound:
            return None


@flow(name="watch", log_prints=True)
def watch(crawl_root: str, config: PipelineConfig = PipelineConfig(), wait: bool = False) -> dict[str, Any]:
    """Start the pipeline for each crawl under `crawl_root` without `curated/{crawl}/clean`.

    With a `pipeline` deployment, each crawl gets its own deployment run, all started at once
    so the workers process the crawls in parallel (with `wait`, this flow then waits for all
    of them); without one, the pipeline runs here, one crawl after the other.
    """
    log = get_run_logger()
    root = config.lake.open()
    found = crawls.find(crawl_root)
    log.info("%s", found.describe(crawl_root))
    new = {name: warcs for name, warcs in found.crawls.items() if not lake.exists(crawls.curated_uri(root, name))}
    deployment = _pipeline_deployment() if new else None
    started = []
    for name, warcs in sorted(new.items()):
        run_config = config.model_copy(deep=True)
        run_config.curate.crawl = name
        run_config.run = None  # each crawl's run is named after it
        run_config.crawls = []
        parameters = {"config": run_config.model_dump(mode="json"), "warcs": warcs}
        if deployment is not None:
            from prefect.deployments import run_deployment

            run = run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=wait)
            started.append(
                {
                    "crawl": name,
                    "warc_files": len(warcs),
                    "flow_run": str(run.id),
                    "state": run.state.name if run.state else "",
                }
            )
        else:
            from flows.pipeline import pipeline

            pipeline(config=run_config, warcs=warcs)
            started.append({"crawl": name, "warc_files": len(warcs), "flow_run": "in process", "state": "Completed"})
        log.info("started the pipeline for crawl %s (%d WARC files)", name, len(warcs))
    if wait and deployment is not None:
        from prefect.flow_runs import wait_for_flow_run  # a coroutine function: run it to the end here
        from prefect.utilities.asyncutils import run_coro_as_sync

        for entry in started:
            finished = run_coro_as_sync(wait_for_flow_run(uuid.UUID(entry["flow_run"]), timeout=None, log_states=True))
            entry["state"] = finished.state.name if finished.state else ""
    if started:
        create_table_artifact(started, key="watch-started", description=f"New crawls under {crawl_root}")
    else:
        log.info("no new crawls under %s (%d found, all curated)", crawl_root, len(found.crawls))
    return {"crawl_root": crawl_root, "found": {n: len(w) for n, w in found.crawls.items()}, "started": started}


def emit_landed(uri: str) -> None:
    """Announce a crawl that has landed (a folder or a glob of WARC files): its curation starts."""
    from prefect.events import emit_event

    emit_event(
        event=LANDED,
        resource={"prefect.resource.id": f"crawl2chat.crawl.{crawls.crawl_name(uri)}"},
        payload={"uri": uri},
    )
