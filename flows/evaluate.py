"""Evaluate a checkpoint on held-out conversations: `evals/{run}/step-{N}/`.

    conversations/{run}/{name}/test --evaluate_chunk (one task per chunk of items)--> evals/{run}/{stage}/step-N (one row per answer)

The results dataset's manifest holds the metrics; the run leaves a table artifact of them
and a markdown artifact of sample conversations. RL reuses this flow on its checkpoints.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dispatch import hand_back
from models import lake as lakes
from tasks.config import LakeConfig
from tasks.evaluate import (
    CODE,
    KIND,
    EvalConfig,
    evaluate_chunk,
    examples,
    markdown_table,
    metrics,
    read_rows,
    select_items,
    table,
    users_loss,
    users_scores,
)
from tasks.layout import Layout, artifact_key
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, flow_run_id, in_lake, run_mapped


@flow(name="evaluate", log_prints=True)
def evaluate(
    checkpoint: str,
    lake: LakeConfig = LakeConfig(),
    config: EvalConfig = EvalConfig(),
    conversations: str | None = None,
    search: str | None = None,
    crawl: str | None = None,
    runner: RunnerConfig = RunnerConfig(),
    run: str | None = None,
    on: str | None = None,
) -> dict[str, Any]:
    """Answer the held-out items of `conversations` (default: the test split of the SFT
    conversations in the model's lineage) with `checkpoint` (a URI or a name under
    checkpoints/) and score them. Search reads `search`, else the crawl's index, else the
    one in the model's lineage. `on` (another model's name) takes that model's held-out set
    and index instead: how the model does on a crawl it never saw. `run` names the artifacts."""
    root = lake.open()
    layout = Layout(root)
    ckpt = layout.model(checkpoint)
    name = layout.model_name(ckpt)
    if on is not None:
        other = layout.model(on)
        conversations = conversations or layout.conversations_for(other)
        search = search or (None if crawl else layout.search_for(other))
    conversations = conversations or layout.conversations_for(ckpt)
    if conversations is None:
        raise FileNotFoundError(
            f"no SFT conversations in the lineage of {ckpt}: give the held-out conversations to evaluate on"
        )
    search = search or (layout.search(crawl) if crawl else layout.search_for(ckpt))
    if not search or not lakes.exists(search):
        raise FileNotFoundError(
            f"no search index {search or f'in the lineage of {ckpt}'}: build it with `crawl2chat search-index`"
        )
    elsewhere = layout.held_out_elsewhere(ckpt, conversations, search)
    out = layout.evals(ckpt, elsewhere)
    if elsewhere:
        name = f"{name}-on-{elsewhere}"  # the artifacts' keys and titles

    n = len(select_items(read_rows(conversations), config.limits, config.seed))
    starts = list(range(0, n, config.chunk))
    results = run_mapped(
        in_lake(root, evaluate_chunk),
        runner,
        f"evaluate {name}: {n} answers",
        key="evaluate-progress",
        checkpoint=unmapped(ckpt),
        conversations=unmapped(conversations),
        search=unmapped(search),
        out=unmapped(out),
        part=[f"part-{i:05d}" for i in range(len(starts))],
        start=starts,
        count=unmapped(config.chunk),
        config=unmapped(config),
    )
    outcomes = [r for b in _batches(out, results) for r in b]
    scores = metrics(outcomes) | users_scores(in_lake(root, users_loss)(ckpt, conversations, config))
    lakes.commit(
        out,
        [lakes.Shard(**r["shard"]) for r in results],
        kind=KIND,
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=[ckpt, conversations, search],
        stats=scores,
    )
    declare(out)
    about = {  # which model, on which crawl's items and index: the table says so, not only its key
        "model": layout.model_name(ckpt),
        "crawls": ", ".join(layout.crawls_of(ckpt)) or "none in the model's lineage",
        "held-out set": conversations,
        "search index": search,
    }
    rows = table({name: scores}, about)
    create_table_artifact(
        rows,
        key=artifact_key("evaluate-metrics", name.replace("/", "-")),
        description=f"{name} on {n} held-out answers",
    )
    create_markdown_artifact(
        examples(outcomes, config.shown),
        key=artifact_key("evaluate-samples", name.replace("/", "-")),
        description=f"sample conversations of {name}",
    )
    print(f"evaluation of {ckpt} ({n} answers):\n{markdown_table(rows)}")
    return hand_back(root, {"checkpoint": ckpt, "results": out, "metrics": scores, "about": about})


def before_after(
    evals: dict[str, dict[str, Any]], run: str | None = None, crawls: list[str] | None = None
) -> list[dict[str, Any]]:
    """One table of several evaluations (say the base model and its SFT), a column each; the
    targets are checked on the last. Left as an artifact (one per run) and printed."""
    about = {"run": run, "crawls": ", ".join(crawls or [])} if run else None
    rows = table({name: e["metrics"] for name, e in evals.items()}, about)
    create_table_artifact(
        rows,
        key=artifact_key("evaluate-before-after", run),
        description=(f"run {run} on {', '.join(crawls or [])}: " if run else "")
        + " vs ".join(e["checkpoint"] for e in evals.values()),
    )
    print(f"evaluation, {' vs '.join(evals)}:\n{markdown_table(rows)}")
    return rows


def _batches(out: str, results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [lakes.read_shard(lakes.join(out, r["shard"]["path"])).to_pylist() for r in results]
