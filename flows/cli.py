"""`crawl2chat`: every flow as a subcommand with the same parameters, plus the local server.

Each stage command takes `--preset` (tiny/small/large) or `--config FILE`, `--lake`, and
`--set key=value` for any other config field (dotted, e.g. `--set curate.extractor=resiliparse`),
then runs the flow against a real Prefect server (PREFECT_API_URL, or the local one that
`crawl2chat server start` manages).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from flows import server
from tasks.config import PipelineConfig, load_config
from tasks.layout import Layout

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_show_locals=False)
server_app = typer.Typer(help="The local Prefect server (SQLite under .prefect/).")
app.add_typer(server_app, name="server")
quality_app = typer.Typer(
    help="Model-based quality filtering: train a classifier for the curate chain's quality step.", no_args_is_help=True
)
app.add_typer(quality_app, name="quality")

Preset = Annotated[str, typer.Option("--preset", "--config", "-c", help="Preset name or YAML file")]
Lake = Annotated[str | None, typer.Option(help="Lake root (folder or s3://bucket/prefix)")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key=value (value is YAML)")]
Run = Annotated[
    str | None,
    typer.Option(
        "--run", help="Run name: what the stage writes goes under {kind}/{run}/ (default: none for a stage alone)"
    ),
]


def config_from(preset: str, lake: str | None, sets: list[str] | None, **fields: Any) -> PipelineConfig:
    """Load a preset, then apply `--set` overrides and the command's own flags (not None)."""
    overrides: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    if lake is not None:
        overrides["lake.root"] = lake
    overrides.update({k: v for k, v in fields.items() if v is not None})
    try:
        return load_config(preset, overrides)
    except ValidationError as error:  # a flag or --set the config refuses: say which, no traceback
        raise typer.BadParameter(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from None


def layout_of(cfg: PipelineConfig) -> Layout:
    return Layout(cfg.lake.open())


def crawl_of(cfg: PipelineConfig, crawl: str | None) -> str:
    """The crawl a stage command reads: the one named, else the run's (a run is named after
    its crawl by default), else the config's."""
    return crawl or (cfg.run if cfg.run and not cfg.crawls else cfg.default_crawl())


def show(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


@server_app.command("start")
def server_start(port: int = server.DEFAULT_PORT, host: str = "127.0.0.1") -> None:
    """Start the local server in the background (reused if it already runs)."""
    url = server.start(port=port, host=host)
    typer.echo(f"Prefect server: {server.ui_url(url)}  (API {url})")


@server_app.command("stop")
def server_stop() -> None:
    typer.echo("stopped" if server.stop() else "no server started from here")


@app.command("deploy")
def deploy_cmd(
    pool_type: Annotated[str, typer.Option(help="Work pool type: process, docker or kubernetes")] = "process",
    gpu_limit: Annotated[int, typer.Option(help="Training runs at once (the gpu concurrency limit)")] = 1,
) -> None:
    """Create the cpu and gpu work pools and the gpu limit, and register every deployment."""
    from flows.deploy import deploy_all

    with server.connected() as url:
        typer.echo(deploy_all(pool_type, gpu_limit))
        typer.echo(f"Deployed to {server.ui_url(url)}/deployments; start workers with `make worker POOL=cpu|gpu`.")


@app.command("watch")
def watch_cmd(
    crawl_root: Annotated[
        str,
        typer.Argument(help="A folder or bucket of crawls (folders of WARC files, or Common Crawl's warc.paths.gz)"),
    ],
    preset: Preset = "tiny",
    lake: Lake = None,
    wait: Annotated[bool, typer.Option(help="Wait for the pipeline runs to finish")] = False,
    sets: Sets = None,
) -> None:
    """Start the pipeline for every crawl under CRAWL_ROOT that the lake has not curated.

    CRAWL_ROOT is a folder of crawl folders, a folder of WARC files (one crawl) or Common
    Crawl's layout (crawl-data/{CRAWL}/warc.paths.gz); each crawl's run is named after it."""
    from flows.watch import watch
    from tasks import crawls

    cfg = config_from(preset, lake, sets)
    typer.echo(crawls.find(crawl_root).describe(crawl_root), err=True)
    with server.connected():
        show(watch(crawl_root=crawl_root, config=cfg, wait=wait))


@app.command("crawl-landed")
def crawl_landed_cmd(uri: Annotated[str, typer.Argument(help="The new crawl: a folder or glob of WARC files")]) -> None:
    """Emit the `crawl2chat.crawl.landed` event: the curate deployment's trigger starts curation."""
    from flows.watch import emit_landed

    with server.connected():
        emit_landed(uri)
    typer.echo(f"crawl2chat.crawl.landed: {uri}")


@app.command("lineage")
def lineage_cmd(uri: Annotated[str, typer.Argument(help="A dataset or checkpoint URI in the lake")]) -> None:
    """Print the chain from a dataset or checkpoint back to its WARC files (from manifests)."""
    from tasks.lineage import render, trace

    typer.echo(render(trace(uri)))


@app.command("sample-crawl")
def sample_crawl_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    pages: Annotated[int | None, typer.Option(help="Pages in the crawl")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    sets: Sets = None,
) -> None:
    """Write the deterministic sample crawl (WARC.gz + ground truth) into the lake."""
    from flows.sample_crawl import sample_crawl

    cfg = config_from(preset, lake, sets, **{"sample_crawl.pages": pages, "sample_crawl.seed": seed})
    with server.connected():
        show(sample_crawl(lake=cfg.lake, config=cfg.sample_crawl, runner=cfg.runner))


Crawl = Annotated[str | None, typer.Option(help="Crawl name: reads curated/{crawl}/clean")]
Clean = Annotated[str | None, typer.Option(help="Clean dataset URI (default: curated/{crawl}/clean)")]


@app.command("tokenizer")
def tokenizer_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Crawl = None,
    clean: Clean = None,
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size")] = None,
    name: Annotated[str | None, typer.Option(help="Stored as tokenizers/{run}/{name}")] = None,
    run: Run = None,
    sets: Sets = None,
) -> None:
    """Train the BPE tokenizer on a sample of a crawl's clean documents."""
    from flows.tokenizer import tokenizer

    cfg = config_from(preset, lake, sets, **{"tokenizer.vocab_size": vocab_size, "tokenizer.name": name, "run": run})
    with server.connected():
        show(
            tokenizer(
                lake=cfg.lake,
                config=cfg.tokenizer,
                clean=clean,
                crawl=None if clean else crawl_of(cfg, crawl),
                holdout=cfg.tokenize.val_fraction,
                run=cfg.run,
            )
        )


@app.command("tokenize")
def tokenize_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Crawl = None,
    clean: Clean = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer name or URI (default: the run's, the config's name)")
    ] = None,
    run: Run = None,
    sets: Sets = None,
) -> None:
    """Encode a crawl's clean documents into token shards (train and val)."""
    from flows.tokenize import tokenize

    cfg = config_from(preset, lake, sets, run=run)
    with server.connected():
        show(
            tokenize(
                lake=cfg.lake,
                config=cfg.tokenize,
                tokenizer=tokenizer or layout_of(cfg).tokenizer(cfg.run, cfg.tokenizer.name),
                clean=clean,
                crawl=crawl or (None if clean else crawl_of(cfg, None)),
                runner=cfg.runner,
                run=cfg.run,
            )
        )


@app.command("pretrain")
def pretrain_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Annotated[str | None, typer.Option(help="Crawl name: trains on tokens/{tokenizer}/{crawl}")] = None,
    tokens: Annotated[
        list[str] | None,
        typer.Option(help="Token folders tokens/{tokenizer}/{crawl} (repeatable; default: the crawl's)"),
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer name or URI (default: the config's)")] = None,
    name: Annotated[str | None, typer.Option(help="Model name: checkpoints/{run}/{name}")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run's checkpoints even if they came from another config (else they move aside)",
        ),
    ] = False,
    run: Run = None,
    sets: Sets = None,
) -> None:
    """Pretrain the GPT on token shards; checkpoints, metrics and samples go to checkpoints/{run}/{name}."""
    from flows.pretrain import pretrain

    cfg = config_from(preset, lake, sets, **{"pretrain.name": name, "pretrain.train.steps": steps, "run": run})
    layout = layout_of(cfg)
    tok = (
        tokenizer
        if tokenizer and layout.is_uri(tokenizer)
        else layout.tokenizer(None if tokenizer else cfg.run, tokenizer or cfg.tokenizer.name)
    )
    tokens = tokens or [layout.tokens(tok, crawl_of(cfg, crawl))]
    with server.connected():
        show(
            pretrain(
                lake=cfg.lake,
                config=cfg.pretrain,
                tokenizer=tok,
                tokens=tokens,
                resume=resume,
                run=cfg.run,
                tracking=cfg.tracking,
            )
        )


@app.command("sft")
def sft_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    base: Annotated[
        str | None, typer.Option(help="Base checkpoint: URI or run name under checkpoints/ (default: the pretrain run)")
    ] = None,
    crawl: Annotated[
        str | None,
        typer.Option(
            help="Crawl whose documents, facts and search index the conversations use (default: with --run, the base model's)"
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="Your conversations: JSONL/Parquet file, glob or lake dataset (repeatable)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="conversations/{run}/{name} and checkpoints/{run}/{name}")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps")] = None,
    run: Run = None,
    sets: Sets = None,
) -> None:
    """Build the SFT conversations (probe, generate, your datasets, pack) and fine-tune the base model."""
    from flows.sft import sft

    cfg = config_from(
        preset, lake, sets, **{"sft.name": name, "sft.train.steps": steps, "sft.datasets": dataset, "run": run}
    )
    base = base or cfg.sft.base or "/".join(p for p in (cfg.run, cfg.pretrain.name) if p)
    with server.connected():
        # A run's base model knows its crawls (lineage); a stage alone reads the config's crawl.
        show(
            sft(
                lake=cfg.lake,
                config=cfg.sft,
                base=base,
                crawl=crawl or (None if cfg.run else cfg.default_crawl()),
                runner=cfg.runner,
                run=cfg.run,
                tracking=cfg.tracking,
            )
        )


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Annotated[
        str, typer.Option(help="Checkpoint or run folder (URI), or a name under checkpoints/: run, run/stage")
    ],
    preset: Preset = "tiny",
    lake: Lake = None,
    conversations: Annotated[
        str | None,
        typer.Option(help="Held-out conversations (default: the test split of the model's SFT conversations)"),
    ] = None,
    crawl: Annotated[
        str | None,
        typer.Option(help="Crawl whose search index the model uses (default: the index in the model's lineage)"),
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(
            help="Another model (run or run/stage) whose held-out set and search index to use: "
            "a crawl this model never saw (evals/{run}/{stage}/on-{that}/step-N)"
        ),
    ] = None,
    sets: Sets = None,
) -> None:
    """Score a checkpoint on held-out math, facts (search on and off), unknown entities and refusals: evals/{run}/{stage}/step-N."""
    from flows.evaluate import evaluate

    cfg = config_from(preset, lake, sets)
    with server.connected():
        show(
            evaluate(
                checkpoint=checkpoint,
                lake=cfg.lake,
                config=cfg.evaluate,
                conversations=conversations,
                crawl=crawl,
                runner=cfg.runner,
                on=on,
            )
        )


@app.command("benchmark")
def benchmark_cmd(
    checkpoint: Annotated[str, typer.Option(help="Checkpoint or run folder (URI), or a run name under checkpoints/")],
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated lm-eval tasks, or the groups core (CORE) and chat (ChatCORE)")
    ] = None,
    preset: Preset = "tiny",
    lake: Lake = None,
    limit: Annotated[int | None, typer.Option(help="Items per task (a quick look, not a score to report)")] = None,
    include_path: Annotated[
        list[str] | None, typer.Option("--include-path", help="Folder of your own lm-eval task YAMLs (repeatable)")
    ] = None,
    allow_code_execution: Annotated[
        bool,
        typer.Option("--allow-code-execution", help="Run HumanEval: lm-eval executes model-written code unsandboxed"),
    ] = False,
    sets: Sets = None,
) -> None:
    """Score a checkpoint on standard benchmarks through lm-evaluation-harness: evals/{run}/{stage}/benchmarks/step-N."""
    from flows.benchmark import benchmark
    from tasks.core import DatasetUnreachable

    cfg = config_from(
        preset,
        lake,
        sets,
        **{
            "benchmark.limit": limit,
            "benchmark.include_path": include_path,
            "benchmark.allow_code_execution": allow_code_execution or None,
        },
    )
    names = [t.strip() for t in (tasks or "").split(",") if t.strip()] or cfg.benchmark.tasks
    if not names:
        raise typer.BadParameter("name the tasks: --tasks core, --tasks chat, or lm-eval task names")
    with server.connected():
        try:
            show(benchmark(checkpoint=checkpoint, lake=cfg.lake, config=cfg.benchmark, tasks=names))
        except DatasetUnreachable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


@app.command("rl")
def rl_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    init: Annotated[
        str | None,
        typer.Option(help="Checkpoint to reinforce: URI or name under checkpoints/ (default: the run's sft model)"),
    ] = None,
    algorithm: Annotated[
        str | None, typer.Option(help="grpo (group-relative advantages) or rft (train on the right samples)")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="Rollout-and-update rounds")] = None,
    name: Annotated[str | None, typer.Option(help="checkpoints/{run}/{name} and rollouts/{run}/{name}")] = None,
    difficulty: Annotated[
        list[int] | None, typer.Option("--difficulty", help="mathgen difficulty 1-5 (repeatable)")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="Your problems: JSONL/Parquet with prompt or question, and answer (repeatable)"),
    ] = None,
    crawl: Annotated[
        str | None, typer.Option(help="Crawl whose search index the model's search tool reads (default: the model's)")
    ] = None,
    run: Run = None,
    sets: Sets = None,
) -> None:
    """Reinforce a chat model on problems with known answers: rollouts mapped over prompt chunks, then RFT or GRPO."""
    from flows.rl import rl

    cfg = config_from(
        preset,
        lake,
        sets,
        **{
            "rl.init": init,
            "rl.algorithm": algorithm,
            "rl.iterations": iterations,
            "rl.name": name,
            "rl.problems.difficulty": difficulty,
            "rl.problems.datasets": dataset,
            "run": run,
        },
    )
    init = cfg.rl.init or "/".join(p for p in (cfg.run, cfg.sft.name) if p)
    with server.connected():
        result = rl(
            lake=cfg.lake, config=cfg.rl, init=init, crawl=crawl, runner=cfg.runner, run=cfg.run, tracking=cfg.tracking
        )
    show({k: v for k, v in result.items() if k != "history"})


@app.command("curate")
def curate_cmd(
    warcs: Annotated[list[str], typer.Argument(help="WARC/WARC.gz URIs or globs (local or s3://)")],
    preset: Preset = "tiny",
    lake: Lake = None,
    extractor: Annotated[str | None, typer.Option(help="trafilatura (FineWeb's) or resiliparse (fast)")] = None,
    crawl: Annotated[str | None, typer.Option(help="Name under curated/ (default: the WARC folder's name)")] = None,
    sets: Sets = None,
) -> None:
    """FineWeb curation of WARC files into curated/{crawl}/clean and .../removed."""
    from flows.curate import curate

    cfg = config_from(preset, lake, sets, **{"curate.extract.extractor": extractor, "curate.crawl": crawl})
    with server.connected():
        show(
            curate(
                warcs=warcs, lake=cfg.lake, config=cfg.curate, dedup=cfg.dedup, runner=cfg.runner, quality=cfg.quality
            )
        )


@app.command("dedup")
def dedup_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Annotated[
        str | None, typer.Option(help="Crawl name: writes dedup/{crawl}/ (default: the sample crawl)")
    ] = None,
    filtered: Annotated[
        str | None, typer.Option(help="Filtered dataset URI (default: curated/{crawl}/filtered)")
    ] = None,
    scope: Annotated[
        str | None, typer.Option(help="crawl (FineWeb's) | lake (every crawl's signatures) | index (dedup/index)")
    ] = None,
    sets: Sets = None,
) -> None:
    """Exact, then MinHash deduplication of a crawl's filtered documents into dedup/{crawl}/."""
    from flows.dedup import dedup

    cfg = config_from(preset, lake, sets, **{"dedup.scope": scope})
    name = crawl or cfg.default_crawl()
    uri = filtered or layout_of(cfg).curated(name).filtered
    with server.connected():
        show(dedup(filtered=uri, crawl=name, lake=cfg.lake, config=cfg.dedup, runner=cfg.runner))


@quality_app.command("train")
def quality_train_cmd(
    positives: Annotated[
        list[str],
        typer.Option(
            "--positives",
            help="Reference texts: JSONL/Parquet file, glob or lake dataset with a text column (repeatable)",
        ),
    ],
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Annotated[
        str | None, typer.Option(help="Crawl whose clean documents are the negatives (default: the sample crawl)")
    ] = None,
    negatives: Annotated[str | None, typer.Option(help="A clean dataset URI instead of curated/{crawl}/clean")] = None,
    name: Annotated[str | None, typer.Option(help="Written to quality/{name}")] = None,
    sets: Sets = None,
) -> None:
    """Train a fastText quality classifier (DCLM's way) into quality/{name}, with a held-out precision/recall table."""
    from flows.quality import quality_train

    cfg = config_from(preset, lake, sets, **{"quality_train.name": name})
    with server.connected():
        show(
            quality_train(
                positives=positives,
                lake=cfg.lake,
                config=cfg.quality_train,
                crawl=None if negatives else (crawl or cfg.default_crawl()),
                negatives=negatives,
            )
        )


@app.command("crawl-from-html")
def crawl_from_html_cmd(
    html_root: Annotated[Path, typer.Argument(help="A folder of HTML files (a mirrored site, a documentation tree)")],
    out: Annotated[Path, typer.Argument(help="The WARC file to write (.warc.gz)")],
    base_url: Annotated[str, typer.Option(help="The site's URL: a page's URL is BASE_URL/its path under HTML_ROOT")],
    limit: Annotated[int | None, typer.Option(help="At most this many pages, spread evenly over the site")] = None,
) -> None:
    """Write a folder of HTML files as a WARC crawl (one response record per page) for `curate`."""
    from tasks.crawls_html import write_html_warc

    try:
        count = write_html_warc(html_root, out, base_url, limit=limit)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{out}: {count} pages from {html_root} as {base_url.rstrip('/')}/")


@app.command("fetch-blocklists")
def fetch_blocklists_cmd(
    dest: Annotated[Path | None, typer.Option(help="Target folder (default .cache/blocklists)")] = None,
) -> None:
    """Fetch FineWeb's URL blocklists from the datatrove wheel on PyPI and compile them."""
    from tasks.curate import blocklists

    folder = blocklists.fetch_datatrove_lists(dest or blocklists.DEFAULT_DIR)
    lists = blocklists.load(str(folder))
    typer.echo(f"{folder}: {len(lists.domains):,} domains, {len(lists.urls):,} URLs ({lists.source})")


@app.command("install-fineweb-extractor")
def install_fineweb_extractor_cmd(
    dest: Annotated[Path | None, typer.Option(help="Target folder (default .cache/trafilatura-1.11)")] = None,
) -> None:
    """Install FineWeb's extractor (trafilatura 1.11, pinned libraries) into a folder of its own:
    FineWeb's filters judge its text (tasks/curate/fineweb_extractor.py)."""
    from tasks.curate import fineweb_extractor

    path = fineweb_extractor.install(dest)
    typer.echo(f"{path}: " + ", ".join(f"{k} {v}" for k, v in fineweb_extractor.installed(path).items()))


@app.command("pipeline")
def pipeline_cmd(
    warcs: Annotated[
        list[str] | None,
        typer.Argument(help="WARC files, folders of them or globs (local or s3://); none: the sample crawl"),
    ] = None,
    preset: Preset = "tiny",
    lake: Lake = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Name of the run: everything after curation goes under it (default: the crawl's name)"
        ),
    ] = None,
    crawl: Annotated[
        str | None, typer.Option(help="Name under curated/ for the WARC files (default: their folder's name)")
    ] = None,
    crawls: Annotated[
        str | None, typer.Option(help="Curated crawls to train on as well: a,b,c, or '*' for every crawl in the lake")
    ] = None,
    sets: Sets = None,
) -> None:
    """Run every stage end to end on your WARC files (or curated crawls), or on the sample crawl."""
    from flows.pipeline import pipeline

    named = [c.strip() for c in crawls.split(",") if c.strip()] if crawls else None
    cfg = config_from(preset, lake, sets, run=run, crawls=named, **{"curate.crawl": crawl})
    with server.connected():
        result = pipeline(config=cfg, warcs=warcs or None)
    show(result)
    if "evaluate" in result:
        from tasks.evaluate import markdown_table

        typer.echo(
            f"\nRun {result['run']} on {', '.join(result['crawls'])}, before and after SFT, on held-out conversations:\n"
            + markdown_table(result["evaluate"]["table"])
        )


@app.command("demo")
def demo_cmd(lake: Lake = None, sets: Sets = None) -> None:
    """The whole pipeline on the embedded default: tiny preset, local lake, local server."""
    from flows.pipeline import pipeline

    cfg = config_from("tiny", lake, sets)
    with server.connected() as url:
        typer.echo(f"Prefect UI: {server.ui_url(url)}")
        result = pipeline(config=cfg)
    show(result)
    if "evaluate" in result:
        from tasks.evaluate import markdown_table

        typer.echo("\nBefore and after SFT, on held-out conversations:\n" + markdown_table(result["evaluate"]["table"]))
    if result.get("rl", {}).get("after"):
        from tasks.rl.evaluate import headline

        rl, metric = result["rl"], "pass1_greedy"
        group, before = headline(rl["before"])
        label = "held-out families" if group == "family" else "held-out problems"
        typer.echo(
            f"\nRL: {label} pass@1 (greedy) {before[metric]:.1%} -> {rl['after'][group][metric]:.1%} "
            f"(new seeds of training families: {rl['before'].get('seed', {}).get(metric, 0):.1%} -> "
            f"{rl['after'].get('seed', {}).get(metric, 0):.1%}); reward curve {rl['reward_curve']}"
        )
    typer.echo(f"\nLake: {Path(cfg.lake.root).resolve()}")
    typer.echo(f"Runs, task lineage and artifacts: {server.ui_url(url)}/runs")


# -- search index and inference ------------------------------------------------------------


@app.command("search-index")
def search_index_cmd(
    preset: Preset = "tiny",
    lake: Lake = None,
    crawl: Annotated[str | None, typer.Option(help="Crawl name: indexes curated/{crawl}/clean")] = None,
    clean: Annotated[str | None, typer.Option(help="Clean dataset URI (default: curated/{crawl}/clean)")] = None,
    passage_chars: Annotated[int | None, typer.Option(help="Passage length in characters")] = None,
    sets: Sets = None,
) -> None:
    """Build the search tool's BM25 index over a crawl's clean documents: search/{crawl}/."""
    from flows.search_index import search_index

    cfg = config_from(preset, lake, sets, **{"search.passage_chars": passage_chars})
    crawl = crawl or (None if clean else cfg.default_crawl())
    with server.connected():
        show(search_index(lake=cfg.lake, config=cfg.search, clean=clean, crawl=crawl, runner=cfg.runner))


Checkpoint = Annotated[
    str, typer.Option(help="Checkpoint or run folder (URI), or a name under the lake's checkpoints/: run, run/stage")
]
MaxNew = Annotated[int, typer.Option(help="Most new tokens per reply or sample")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature (0: greedy)")]
TopK = Annotated[int | None, typer.Option(help="Sample among the k most likely tokens")]
TopP = Annotated[float | None, typer.Option(help="Sample among the most likely tokens holding this much probability")]
Seed = Annotated[int, typer.Option(help="Random seed (the same seed gives the same samples)")]
DeviceOpt = Annotated[str, typer.Option(help="auto: the GPU when there is one, else cpu; or cpu, cuda, cuda:N, mps")]
DtypeOpt = Annotated[str, typer.Option(help="auto: bfloat16 on a GPU that has it, else float32; or float32, bfloat16")]


def _engine(
    preset: str,
    lake: str | None,
    checkpoint: str,
    search: str | None,
    no_search: bool,
    device: str = "auto",
    dtype: str = "auto",
) -> Any:
    """The engine for a checkpoint (a URI, or a name under checkpoints/: run, run/stage), on
    the device and dtype of models/device.py's rule, with the search tool over `search`, else
    the index the model was trained with (its lineage)."""
    from models.engine import Engine

    layout = layout_of(config_from(preset, lake, None))
    try:
        uri = layout.model(checkpoint)
        if not no_search and search is None:
            search = layout.search_for(uri)
            if search is None:
                typer.echo(
                    f"(no search index in the lineage of {uri}: search calls will get an error; give --search)",
                    err=True,
                )
        return Engine.from_checkpoint(uri, search=None if no_search else search, device=device, dtype=dtype)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("chat")
def chat_cmd(
    checkpoint: Checkpoint,
    preset: Preset = "tiny",
    lake: Lake = None,
    search: Annotated[
        str | None, typer.Option(help="Search index URI (default: the one the model was trained with)")
    ] = None,
    no_search: Annotated[bool, typer.Option("--no-search", help="Run without the search tool")] = False,
    max_new_tokens: MaxNew = 256,
    temperature: Temperature = 0.7,
    top_k: TopK = 50,
    top_p: TopP = None,
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Chat with a model in the terminal: replies stream; tool calls and results show dimmed."""
    from rich.console import Console

    from flows.chat import chat_loop

    engine = _engine(preset, lake, checkpoint, search, no_search, device, dtype)
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    chat_loop(engine, Console(highlight=False), sampling)


@app.command("generate")
def generate_cmd(
    checkpoint: Checkpoint,
    prompt: Annotated[str, typer.Option(help="Text to continue")],
    preset: Preset = "tiny",
    lake: Lake = None,
    num_samples: Annotated[int, typer.Option(help="Continuations to sample (one prefill shared by all)")] = 1,
    max_new_tokens: MaxNew = 128,
    temperature: Temperature = 0.8,
    top_k: TopK = 50,
    top_p: TopP = None,
    seed: Seed = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the samples (tokens, mask, text) as JSON")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Continue a prompt with a (base) model: the samples stream to the terminal."""
    import io

    from rich.console import Console

    from flows.chat import generate_text

    engine = _engine(preset, lake, checkpoint, None, True, device, dtype)
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    console = Console(file=io.StringIO()) if as_json else Console(highlight=False)
    samples = generate_text(engine, console, prompt, num_samples, sampling)
    if as_json:
        show(samples)


@app.command("export")
def export_cmd(
    checkpoint: Checkpoint,
    out: Annotated[str, typer.Option(help="Folder to write (HF transformers loads it with from_pretrained)")],
    preset: Preset = "tiny",
    lake: Lake = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer folder (default: the checkpoint's)")] = None,
    dtype: Annotated[
        str, typer.Option(help="Weights' dtype: float32 (as trained) or bfloat16 (half the size)")
    ] = "float32",
    tokenizer_only: Annotated[
        bool, typer.Option(help="Only the tokenizer files (for lm-eval against our server; a model with recall)")
    ] = False,
) -> None:
    """Export a checkpoint and its tokenizer as a HuggingFace model folder (Qwen3 architecture)."""
    from models.export import export

    model = layout_of(config_from(preset, lake, None)).model(checkpoint)
    try:
        show(export(model, out, tokenizer, dtype, tokenizer_only=tokenizer_only))
    except ValueError as refused:  # a model Qwen3 cannot hold (recall, smeared keys): say why, no traceback
        raise typer.BadParameter(str(refused), param_hint="--checkpoint") from None


@app.command("serve")
def serve_cmd(
    checkpoint: Checkpoint,
    preset: Preset = "tiny",
    lake: Lake = None,
    search: Annotated[str | None, typer.Option(help="Search index URI (default: the lake's search/{crawl})")] = None,
    no_search: Annotated[bool, typer.Option("--no-search", help="Run without the search tool")] = False,
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default; 0.0.0.0 exposes it)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="The model's name in the API (default: the checkpoint's last path part)")
    ] = None,
    max_batch: Annotated[
        int, typer.Option(help="Rows decoded together at most (each sample of each request is a row)")
    ] = 32,
    max_waiting: Annotated[
        int, typer.Option(help="Rows waiting for the batch at most; beyond that requests get 429")
    ] = 256,
    device: Annotated[
        str, typer.Option(help="Where the model runs: auto (the GPU when there is one), cpu, cuda, cuda:1, ...")
    ] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 on a GPU that has it, else float32), bfloat16, float16, float32")
    ] = "auto",
) -> None:
    """Serve a checkpoint over an OpenAI-compatible API (/v1/chat/completions, /v1/completions) with a chat page at /."""
    from flows.serve import serve

    engine = _engine(preset, lake, checkpoint, search, no_search, device, dtype)
    model_name = name or checkpoint.strip("/")  # what the user typed: a run, run/stage or a URI
    typer.echo(f"Serving {model_name!r} on http://{host}:{port}/  (OpenAI API at http://{host}:{port}/v1)", err=True)
    serve(engine, model_name, host=host, port=port, capacity=max_batch, max_waiting=max_waiting)
