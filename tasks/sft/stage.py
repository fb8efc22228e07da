"""The SFT stage's tasks: probe the base model, write the conversations, pack, train.

    base checkpoint + facts, clean documents --probe_chunk (one task per chunk of facts)--> conversations/{name}/probe
    facts, documents + search/{crawl} + probe --generate_source (one task per source)---> conversations/{name}/{train,val,test}
    a user's JSONL/Parquet file --import_user_file (one task per file)---------------> the same datasets
    train, val --pack_rows (one task per split)--> conversations/{name}/rows/{tokenizer}-{T}/{train,val}
    rows + base --train_sft (on the gpu pool)--> checkpoints/{name}/step-N

Every task takes and returns URIs and small dicts; its logic is the plain function of the
same name without the `@lake_task` (reach it as `task.fn`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, replace
from typing import Any

import pyarrow as pa

from models import checkpoint, lake
from models.engine import Engine
from models.gpt import GPTConfig
from models.storage import read_json
from models.tools import SearchIndex
from models.train import RunSpec, train
from tasks.pretrain import SUMMARY_KEYS, check_batch, resume_or_start, run_key, torchrun, train_body
from tasks.runtime import CRASH_RETRIES, code_version, config_hash, digest, flow_run_id, gpu_slot, lake_task, progress
from tasks.sft import CODE, SFTConfig, generate, probe, schema
from tasks.sft import documents as documents_
from tasks.sft.pack import KIND as ROWS_KIND
from tasks.sft.pack import pack_split

KIND = "conversations"


def training_entities(facts: str, config: SFTConfig) -> list[generate.Entity]:
    """The entities whose facts SFT may train on (never the held-out ones)."""
    return [
        e
        for e in generate.load_entities(facts).values()
        if generate.entity_split(e.id, config.seed, config.test_fraction) == "train"
    ]


def read_definitions(documents: list[str] | None, config: SFTConfig) -> list[documents_.Definition]:
    return list(documents_.definitions(documents, config.definitions)) if documents else []


def probe_items(facts: str | None, documents: list[str] | None, config: SFTConfig) -> list[dict[str, str]]:
    """What the probe asks: the training entities' facts, then the training documents'
    definitions (a cloze of the sentence's opening, judged on the predicate's first words)."""
    items = probe.probe_items(training_entities(facts, config)) if facts else []
    ctx = generate.Context(seed=config.seed, test_fraction=config.test_fraction, entities={})
    return items + [
        {"entity_id": d.id, "attribute": "definition", "prompt": d.cloze, "value": d.key}
        for d in read_definitions(documents, config)
        if generate.doc_split(ctx, d) == "train"
    ]


@lake_task(inputs=("base", "facts", "documents"), code=CODE)
def probe_chunk(
    base: str,
    facts: str | None,
    out: str,
    part: str,
    start: int,
    count: int,
    config: SFTConfig,
    documents: list[str] | None = None,
) -> dict[str, Any]:
    """Probe items start..start+count (probe_items) with the base model."""
    items = probe_items(facts, documents, config)[start : start + count]
    engine = Engine.from_checkpoint(base, device=config.train.device, dtype=config.train.dtype)
    rows = probe.probe(
        engine, items, config.probe_samples, config.probe_temperature, config.probe_tokens, config.seed, start
    )
    shard = lake.write_shard(out, part, pa.Table.from_pylist(rows, schema=probe.SCHEMA))
    return {"shard": asdict(shard), **Counter(r["verdict"] for r in rows)}


def probe_count(facts: str | None, documents: list[str] | None, config: SFTConfig) -> int:
    return len(probe_items(facts, documents, config))


def read_verdicts(probe_uri: str | None) -> dict[tuple[str, str], str]:
    if probe_uri is None:
        return {}
    return probe.verdicts(
        [r for b in lake.iter_batches(probe_uri, columns=["entity_id", "attribute", "verdict"]) for r in b.to_pylist()]
    )


def _write_splits(out: str, part: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One shard named `part` in each split dataset under `out` (empty splits included, so
    every split lists every part)."""
    return {
        split: asdict(lake.write_shard(lake.join(out, split), part, schema.to_table(rows.get(split, []))))
        for split in generate.SPLITS
    }


@lake_task(inputs=("facts", "search", "probe_uri", "documents"), code=CODE)
def generate_source(
    source: str,
    facts: str | None,
    search: str | None,
    probe_uri: str | None,
    out: str,
    config: SFTConfig,
    documents: list[str] | None = None,
) -> dict[str, Any]:
    """One generated source's conversations, as the part `part-{source}` of each split."""
    index = SearchIndex.open(search) if search else None
    try:
        ctx = generate.Context(
            seed=config.seed,
            test_fraction=config.test_fraction,
            entities=generate.load_entities(facts) if facts else {},
            search=generate.SearchTool(index, config.search_results, config.result_chars) if index else None,
            probe=read_verdicts(probe_uri),
            counts=config.counts,
            math_difficulty=tuple(config.math_difficulty),
            definitions=read_definitions(documents, config) if source in generate.DOC_SOURCES else [],
        )
        if ctx.search is None and source in ("facts_search", "unknown", "doc_questions", "doc_unknown"):
            raise ValueError(f"source {source} needs the search index (search/{{crawl}}): build it first")
        rows = generate.generate(source, ctx, config.val_fraction, config.surface_rate)
    finally:
        if index is not None:
            index.close()
    return {"source": source, "shards": _write_splits(out, f"part-{source}", rows)}


@lake_task(inputs=("uri",), code=CODE)
def import_user_file(uri: str, out: str, part: str, config: SFTConfig) -> dict[str, Any]:
    """A user's file of conversations: valid rows into train, val and test (by the id's hash:
    `datasets_test_fraction` held out for evaluation, then `val_fraction` for the validation
    loss), the rest counted by reason."""
    stats: dict[str, Any] = {"rows": 0, "conversations": 0}
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    test, val = config.datasets_test_fraction, config.datasets_test_fraction + config.val_fraction
    for r in schema.read_user_dataset(uri, stats):
        u = generate.fraction("users", config.seed, r["id"])
        rows["test" if u < test else "val" if u < val else "train"].append(r)
    return {"source": uri, "shards": _write_splits(out, part, rows), **stats}


def commit_conversations(
    out: str, results: list[dict[str, Any]], config: SFTConfig, parents: list[str]
) -> dict[str, int]:
    """Commit train, val and test from every part; returns rows per split."""
    counts = {}
    for split in generate.SPLITS:
        shards = [lake.Shard(**r["shards"][split]) for r in results if split in r["shards"]]
        by_source = {r["source"]: r["shards"][split]["rows"] for r in results if split in r["shards"]}
        manifest = lake.commit(
            lake.join(out, split),
            shards,
            kind=KIND,
            flow_run_id=flow_run_id(),
            config_hash=config_hash(config),
            code_version=code_version(*CODE),
            parents=parents,
            stats={"split": split, "by_source": by_source},
        )
        counts[split] = manifest.rows
    return counts


@lake_task(inputs=("conversations", "tokenizer"), code=CODE)
def pack_rows(
    conversations: str, tokenizer: str, seq_len: int, out: str, config: SFTConfig, users_share: float | None = None
) -> dict[str, Any]:
    """Render and pack one split into rows of seq_len + 1 tokens (users' conversations making
    up `users_share` of them, when given), and commit them."""
    stats = pack_split(conversations, tokenizer, seq_len, out, config.seed, users_share)
    shards = [lake.Shard(**s) for s in stats.pop("shards")]
    lake.commit(
        out,
        shards,
        kind=ROWS_KIND,
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=[conversations, tokenizer],
        stats=stats,
    )
    return {"uri": lake.normalize(out), **stats}


def base_config(base: str) -> dict[str, Any]:
    """The base checkpoint's config.json (model, tokenizer): what SFT inherits."""
    return read_json(lake.join(checkpoint.resolve(base), "config.json"))


def model_for_sft(base: GPTConfig, recall: bool) -> GPTConfig:
    """The model SFT trains: the base's, with recall in context and its query pointer added
    when `recall` asks for them (Trainer._initialize gives the new parameters their starting
    weights; a base that already recalls in context is kept as trained). A base that already
    recalls everywhere is refused: its pointer was trained to read and write anywhere, and
    narrowing it silently would train another model than the one asked for."""
    if not recall or (base.recall and base.recall_scope == "context"):
        return base
    if base.recall:
        raise ValueError(
            f"sft.recall adds recall in context, but the base model already recalls with scope "
            f"{base.recall_scope!r}: fine-tune it without sft.recall, or start from a base without recall"
        )
    return replace(base, recall=True, recall_scope="context", query_pointer=True)


@lake_task(
    inputs=("base", "train_rows", "val_rows", "tokenizer"),
    code=(*CODE, "models"),
    retries=CRASH_RETRIES,
    task_run_name="sft {run}",
)
def train_sft(base: str, train_rows: str, val_rows: str, tokenizer: str, run: str, config: SFTConfig) -> dict[str, Any]:
    """Fine-tune `base` on the packed rows into `run`, holding a slot of the `gpu` limit, in
    this process or, with `nproc` > 1, through torchrun as pretraining does. A retry (or a
    rerun after a crash) resumes from the run's newest checkpoint of the same configuration:
    the same batches, the same result."""
    model = model_for_sft(GPTConfig(**base_config(base)["model"]), config.recall)
    key = run_key(config)
    inputs = digest([lake.identity(u) for u in (train_rows, val_rows, tokenizer, base)], length=16)
    lineage = {
        "config_hash": key,
        "inputs_hash": inputs,
        "code_version": code_version(*CODE, "models"),
        "flow_run_id": flow_run_id(),
    }
    spec = RunSpec(
        data=[train_rows],
        val=[val_rows],
        tokenizer=tokenizer,
        out=run,
        lineage=lineage,
        init_from=base,
        data_format="sft",
    )
    with gpu_slot(config.gpu_slots), progress(config.train.steps, f"sft {run}", key="sft-progress") as bar:
        carry_on = resume_or_start(run, key, inputs, False)
        if config.nproc > 1:  # the same torchrun path as pretraining: DDP, rank 0 writes the checkpoints
            check_batch(model, config.train, config.nproc)
            summary = torchrun(train_body(model, config.train, spec), config.nproc, carry_on, bar)
        else:
            summary = train(
                model, config.train, spec, resume=carry_on, on_step=lambda row: bar.advance(row["step"] - bar.done)
            )
    return {k: summary.get(k) for k in SUMMARY_KEYS}
