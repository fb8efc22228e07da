"""The pipeline's report card: one markdown page that says what each stage made and links to
the artifacts the stages left (funnels, token counts, metrics, samples).

It is a keyed Prefect artifact (`pipeline-report-card-{run}`) and a file in the lake
(`reports/{run}/{flow run}.md`, plus `latest.md`), so it can be read without the server. It
opens with the crawls and the run it is about.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.runtime import flow_run
from prefect.settings import get_current_settings

from models import lake
from tasks.layout import Layout, artifact_key

KEY = "pipeline-report-card"


def descendants(client: Any, flow_run_id: uuid.UUID) -> list[Any]:
    """A flow run and every subflow run below it (in-process subflows and deployment runs)."""
    runs: list[Any] = []
    frontier = [flow_run_id]
    while frontier:
        runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=frontier)))
        seen = {r.id for r in runs}
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
        )
        frontier = [c.id for c in children if c.id not in seen]
    return runs


def stage_artifacts(flow_run_id: uuid.UUID) -> dict[str, str]:
    """Keyed artifacts left by this run and its subflows: key -> artifact id (latest wins)."""
    with get_client(sync_client=True) as client:
        ids = [r.id for r in descendants(client, flow_run_id)]
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    return {a.key: str(a.id) for a in sorted(found, key=lambda a: a.created) if a.key and a.type != "progress"}


def _headline(result: Any) -> tuple[list[str], list[str]]:
    """A stage result's scalar figures and the lake URIs it names."""
    figures, uris = [], []
    if not isinstance(result, dict):
        return figures, uris
    for key, value in result.items():
        if isinstance(value, str) and (value.startswith(("s3://", "/")) and not value.endswith((".warc.gz", ".warc"))):
            uris.append(f"`{value}`")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            figures.append(f"{key} {value:,.4g}" if isinstance(value, float) else f"{key} {value:,}")
        elif isinstance(value, dict):
            sub_figures, sub_uris = _headline(value)
            figures += [f"{key}.{f}" for f in sub_figures[:4]]
            uris += sub_uris
    return figures, uris


def render(
    stages: dict[str, Any],
    artifacts: dict[str, str],
    ui_url: str | None,
    run: str | None = None,
    crawls: list[str] | None = None,
) -> str:
    lines = [f"# Report card: run {run}" if run else "# Report card", ""]
    if crawls:
        lines += [f"Crawl{'s' if len(crawls) > 1 else ''}: {', '.join(crawls)}", ""]
    lines += ["| stage | figures | datasets and checkpoints | artifacts |", "|---|---|---|---|"]
    for stage, result in stages.items():
        figures, uris = _headline(result)
        prefix = stage.replace("_", "-") + "-"
        keys = sorted(k for k in artifacts if k.startswith(prefix))
        links = [f"[{k}]({ui_url}/v2/artifacts/key/{k})" if ui_url else k for k in keys]
        lines.append(f"| {stage} | {'; '.join(figures[:8])} | {'<br>'.join(uris[:6])} | {', '.join(links)} |")
    other = sorted(k for k in artifacts if not any(k.startswith(s.replace("_", "-") + "-") for s in stages))
    if other:
        lines += ["", "Other artifacts: " + ", ".join(other)]
    lines += ["", "Lineage of any dataset or checkpoint: `crawl2chat lineage URI`."]
    return "\n".join(lines) + "\n"


def publish(stages: dict[str, Any], lake_root: str, run: str | None = None, crawls: list[str] | None = None) -> str:
    """Render the report card for the current flow run, store it in the lake and as an artifact
    (both named by the pipeline's run)."""
    run_id = uuid.UUID(flow_run.id)
    ui_url = get_current_settings().ui_url
    markdown = render(stages, stage_artifacts(run_id), ui_url.rstrip("/") if ui_url else None, run, crawls)
    folder = Layout(lake_root).reports(run)
    lake.write_text_atomic(lake.join(folder, f"{flow_run.name}.md"), markdown)
    lake.write_text_atomic(lake.join(folder, "latest.md"), markdown)
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key(KEY, run),
        description=f"What each stage of run {run} made, with links to its artifacts",
    )
    return lake.join(folder, f"{flow_run.name}.md")
