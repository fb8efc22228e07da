"""The end-to-end pipeline: a crawl in, a chat assistant out.

Each stage is a subflow. On the embedded default (the CLI, `make demo`) all run in this process;
when the pipeline runs from a deployment, the training stages (pretrain, SFT, evaluate, RL) run
as their own deployments' flow runs on the `gpu` pool (flows/dispatch.py).

What it trains on: the WARC files given (curated first), plus the curated crawls named in
`config.crawls` ('*': every crawl in the lake); with neither, the sample crawl it generates.
Everything after curation is named by the run (`config.run`, default the crawl's name), so
runs on other crawls, or with other configs under another name, never overwrite it.
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
from models import lake
from tasks.config import PipelineConfig
from tasks.layout import Layout, safe_name


def crawls_to_train_on(config: PipelineConfig, layout: Layout, curated: str | None) -> list[str]:
    """The crawl just curated, then those the config names ('*': every curated crawl), once each."""
    named = layout.crawls() if config.crawls == ["*"] else [safe_name(c) for c in config.crawls]
    chosen = list(dict.fromkeys(([curated] if curated else []) + named))
    absent = [c for c in chosen if c != curated and not lake.exists(layout.curated(c).clean)]
    if absent:
        raise FileNotFoundError(
            f"crawls {absent} are not curated in {layout.root}: curate them first (`crawl2chat curate`)"
        )
    if not chosen:
        raise ValueError("nothing to train on: give WARC files or name curated crawls")
    return chosen


def run_name(config: PipelineConfig, crawls: list[str], layout: Layout) -> str:
    """The run's name: the config's, else the crawl's name (the crawls' names joined by '_').
    A run over several crawls owns `search/{run}`, so it must not be named like a crawl."""
    run = safe_name(config.run or "_".join(crawls))
    if len(crawls) > 1 and run in layout.crawls():
        raise ValueError(
            f"run {run!r} trains on several crawls and cannot share a name with the crawl {run!r}: choose another --run"
        )
    return run


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), warcs: list[str] | None = None) -> dict[str, Any]:
    """Curate `warcs` (URIs, folders or globs; the sample crawl when neither they nor
    config.crawls are given) and train on the result, as the run config.run."""
    layout = Layout(config.lake.open())
    out: dict[str, Any] = {}
    curated = None
    curate_config = config.curate
    if not warcs and not config.crawls:
        out["sample_crawl"] = sample_crawl(lake=config.lake, config=config.sample_crawl, runner=config.runner)
        warcs = out["sample_crawl"]["warcs"]
        # the sample crawl is named by its config, whatever files a new size of it has
        curate_config = curate_config.model_copy(update={"crawl": curate_config.crawl or config.sample_crawl.name})
    if warcs:
        out["curate"] = curate(
            warcs=warcs,
            lake=config.lake,
            config=curate_config,
            dedup=config.dedup,
            runner=config.runner,
            quality=config.quality,
        )
        curated = out["curate"]["crawl"]
    crawls = crawls_to_train_on(config, layout, curated)
    run = run_name(config, crawls, layout)
    cleans = [layout.curated(c).clean for c in crawls]
    one = crawls[0] if len(crawls) == 1 else None
    print(f"run {run}: training on {', '.join(crawls)}")
    # The search tool's BM25 index over the clean documents (what the engine's search reads):
    # the crawl's own, or one over every crawl of the run.
    out["search_index"] = search_index(
        lake=config.lake,
        config=config.search,
        clean=cleans[0] if one else cleans,
        crawl=one or run,
        runner=config.runner,
    )
    search = out["search_index"]["uri"]
    # Tokenize: train on a sample of the clean documents (never the validation ones), then encode them all.
    out["tokenizer"] = tokenizer(
        lake=config.lake,
        config=config.tokenizer,
        clean=cleans[0] if one else cleans,
        holdout=config.tokenize.val_fraction,
        run=run,
    )
    encoded = {
        crawl: tokenize(
            lake=config.lake,
            config=config.tokenize,
            tokenizer=out["tokenizer"]["uri"],
            clean=clean,
            crawl=crawl,
            runner=config.runner,
            run=run,
        )
        for crawl, clean in zip(crawls, cleans)
    }
    out["tokenize"] = encoded[one] if one else encoded
    # Pretrain the base model on the crawls' tokens (resumes by itself a run of the same config and data).
    out["pretrain"] = run_stage(
        pretrain,
        lake=config.lake,
        config=config.pretrain,
        tokenizer=out["tokenizer"]["uri"],
        tokens=[e["uri"] for e in encoded.values()],
        run=run,
        tracking=config.tracking,
    )
    benchmarks(out, "pretrain", config)
    # SFT: conversations from the crawl (answers grounded in real search results, refusals where
    # the base model's knowledge probe says it does not know), then fine-tuning from the base model.
    out["sft"] = run_stage(
        sft,
        lake=config.lake,
        config=config.sft,
        base=out["pretrain"]["checkpoint"],
        crawl=one,
        search=search,
        clean=cleans,
        runner=config.runner,
        run=run,
        tracking=config.tracking,
    )
    benchmarks(out, "sft", config)
    # Evaluate the base and the fine-tuned model on the same held-out conversations.
    models = {"base": out["pretrain"]["checkpoint"], "sft": out["sft"]["checkpoint"]}
    evals = {
        name: run_stage(
            evaluate,
            checkpoint=ckpt,
            lake=config.lake,
            config=config.evaluate,
            conversations=out["sft"]["conversations"]["test"],
            search=search,
            runner=config.runner,
            run=run,
        )
        for name, ckpt in models.items()
    }
    out["evaluate"] = {
        "run": run,
        "crawls": crawls,
        "results": {name: e["results"] for name, e in evals.items()},
        "table": before_after(evals, run, crawls),
    }
    # RL: sample solutions to problems with known answers, score them, reinforce the right ones.
    out["rl"] = run_stage(
        rl,
        lake=config.lake,
        config=config.rl,
        init=out["sft"]["checkpoint"],
        search=search,
        runner=config.runner,
        run=run,
        tracking=config.tracking,
    )
    benchmarks(out, "rl", config)
    out["run"], out["crawls"] = run, crawls
    out["report_card"] = report.publish(out, layout.root, run, crawls)
    return out


def benchmarks(out: dict[str, Any], stage: str, config: PipelineConfig) -> None:
    """Standard benchmarks of a stage's checkpoint, when the config names tasks for it
    (benchmark.after, e.g. {pretrain: [core], sft: [chat], rl: [chat]}; none by default)."""
    tasks = config.benchmark.after.get(stage)
    if tasks:
        out.setdefault("benchmark", {})[stage] = run_stage(
            benchmark, checkpoint=out[stage]["checkpoint"], lake=config.lake, config=config.benchmark, tasks=tasks
        )
