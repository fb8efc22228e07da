"""The end-to-end pipeline: a crawl in, a chat assistant out.

Each stage is a subflow. On the embedded default (the CLI, `make demo`) all run in this process;
when the pipeline runs from a deployment, the training stages (pretrain, SFT, evaluate, RL) run
as their own deployments' flow runs on the `gpu` pool (flows/dispatch.py).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import report
from flows.benchmark import benchmark
from flows.curate import curate
from flows.dispatch import run_stage
from flows.evaluate import before_after, evaluate
from flows.pretrain import pretrain
from flows.rl import rl
from flows.sample_crawl import sample_crawl
from flows.search_index import search_index
from flows.sft import sft
from flows.tokenize import tokenize
from flows.tokenizer import tokenizer
from tasks.config import PipelineConfig


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), warcs: list[str] | None = None) -> dict[str, Any]:
    """Curate `warcs` (URIs or globs; the sample crawl when empty) and train on the result."""
    out: dict[str, Any] = {}
    if not warcs:
        out["sample_crawl"] = sample_crawl(lake=config.lake, config=config.sample_crawl)
        warcs = out["sample_crawl"]["warcs"]
    out["curate"] = curate(warcs=warcs, lake=config.lake, config=config.curate, dedup=config.dedup, runner=config.runner, quality=config.quality)
    clean, crawl = out["curate"]["clean_uri"], out["curate"]["crawl"]
    # The search tool's BM25 index over the clean documents (what the engine's search reads).
    out["search_index"] = search_index(lake=config.lake, config=config.search, clean=clean, crawl=crawl, runner=config.runner)
    # Tokenize: train on a sample of the clean documents (never the validation ones), then encode them all.
    out["tokenizer"] = tokenizer(lake=config.lake, config=config.tokenizer, clean=clean, holdout=config.tokenize.val_fraction)
    out["tokenize"] = tokenize(
        lake=config.lake, config=config.tokenize, tokenizer=out["tokenizer"]["uri"], clean=clean, crawl=crawl, runner=config.runner
    )
    # Pretrain the base model on the crawl's tokens (resumes by itself a run of the same config and data).
    tokens = out["tokenize"]["train"]["uri"].rstrip("/").rsplit("/", 1)[0]
    out["pretrain"] = run_stage(pretrain, lake=config.lake, config=config.pretrain, tokenizer=out["tokenizer"]["uri"], tokens=[tokens],
                               tracking=config.tracking)
    benchmarks(out, "pretrain", config)
    # SFT: conversations from the crawl (answers grounded in real search results, refusals where
    # the base model's knowledge probe says it does not know), then fine-tuning from the base model.
    out["sft"] = run_stage(sft, lake=config.lake, config=config.sft, base=out["pretrain"]["checkpoint"], crawl=crawl, runner=config.runner,
                          tracking=config.tracking)
    benchmarks(out, "sft", config)
    # Evaluate the base and the fine-tuned model on the same held-out conversations.
    runs = {"base": out["pretrain"]["checkpoint"], "sft": out["sft"]["checkpoint"]}
    evals = {
        name: run_stage(evaluate, checkpoint=ckpt, lake=config.lake, config=config.evaluate, conversations=out["sft"]["conversations"]["test"],
                       crawl=crawl, runner=config.runner)
        for name, ckpt in runs.items()
    }
    out["evaluate"] = {"results": {name: e["results"] for name, e in evals.items()}, "table": before_after(evals)}
    # RL: sample solutions to problems with known answers, score them, reinforce the right ones.
    out["rl"] = run_stage(rl, lake=config.lake, config=config.rl, init=out["sft"]["checkpoint"], crawl=crawl, runner=config.runner,
                         tracking=config.tracking)
    benchmarks(out, "rl", config)
    out["report_card"] = report.publish(out, config.lake.open())
    return out


def benchmarks(out: dict[str, Any], stage: str, config: PipelineConfig) -> None:
    """Standard benchmarks of a stage's checkpoint, when the config names tasks for it
    (benchmark.after, e.g. {pretrain: [core], sft: [chat], rl: [chat]}; none by default)."""
    tasks = config.benchmark.after.get(stage)
    if tasks:
        out.setdefault("benchmark", {})[stage] = run_stage(
            benchmark, checkpoint=out[stage]["checkpoint"], lake=config.lake, config=config.benchmark, tasks=tasks
        )
