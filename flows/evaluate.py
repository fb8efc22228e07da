"""Evaluate a checkpoint on held-out conversations: `evals/{run}/step-{N}/`.

    conversations/{name}/test --evaluate_chunk (one task per chunk of items)--> evals/{run}/step-N (one row per answer)

The results dataset's manifest holds the metrics; the run leaves a table artifact of them
and a markdown artifact of sample conversations. RL reuses this flow on its checkpoints.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dispatch import record_result
from tasks import lake as lakes
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
    resolve_checkpoint,
    select_items,
    table,
)
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, in_lake, run_mapped


@flow(name="evaluate", log_prints=True, on_completion=[record_result])
def evaluate(
    checkpoint: str,
    lake: LakeConfig = LakeConfig(),
    config: EvalConfig = EvalConfig(),
    conversations: str | None = None,
    search: str | None = None,
    crawl: str = "sample",
    sft_name: str = "sft",
    runner: RunnerConfig = RunnerConfig(),
) -> dict[str, Any]:
    """Answer the held-out items of `conversations` (default conversations/{sft_name}/test)
    with `checkpoint` (with the search index `search`, default search/{crawl}) and score them."""
    root = lake.open()
    ckpt = resolve_checkpoint(root, checkpoint)
    run, step = ckpt.rstrip("/").split("/")[-2:]
    conversations = conversations or lakes.join(root, "conversations", sft_name, "test")
    search = search or lakes.join(root, "search", crawl)
    if not lakes.exists(search):
        raise FileNotFoundError(f"no search index at {search}: build it with `crawl2chat search-index`")
    out = lakes.join(root, "evals", run, step)

    n = len(select_items(read_rows(conversations), config.limits, config.seed))
    starts = list(range(0, n, config.chunk))
    results = run_mapped(
        in_lake(root, evaluate_chunk), runner, f"evaluate {run}/{step}: {n} answers", key="evaluate-progress",
        checkpoint=unmapped(ckpt), conversations=unmapped(conversations), search=unmapped(search), out=unmapped(out),
        part=[f"part-{i:05d}" for i in range(len(starts))], start=starts, count=unmapped(config.chunk), config=unmapped(config),
    )
    outcomes = [r for b in _batches(out, results) for r in b]
    scores = metrics(outcomes)
    lakes.commit(
        out, [lakes.Shard(**r["shard"]) for r in results], kind=KIND, config_hash=config_hash(config),
        code_version=code_version(*CODE), parents=[ckpt, conversations, search], stats=scores,
    )
    declare(out)
    rows = table({f"{run}/{step}": scores})
    create_table_artifact(rows, key="evaluate-metrics", description=f"{run}/{step} on {n} held-out answers")
    create_markdown_artifact(examples(outcomes, config.shown), key="evaluate-samples", description=f"sample conversations of {run}/{step}")
    print(f"evaluation of {ckpt} ({n} answers):\n{markdown_table(rows)}")
    return {"checkpoint": ckpt, "results": out, "metrics": scores}


def before_after(evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table of several evaluations (say the base model and its SFT), a column each; the
    targets are checked on the last. Left as an artifact and printed."""
    rows = table({name: e["metrics"] for name, e in evals.items()})
    create_table_artifact(rows, key="evaluate-before-after", description=" vs ".join(e["checkpoint"] for e in evals.values()))
    print(f"evaluation, {' vs '.join(evals)}:\n{markdown_table(rows)}")
    return rows


def _batches(out: str, results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [lakes.read_shard(lakes.join(out, r["shard"]["path"])).to_pylist() for r in results]
