"""Encode a crawl's clean documents: `tokens/{tokenizer}/{crawl}/{train,val}/`, one task per shard."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from models.tokenizer import Tokenizer
from tasks import lake as lakes
from tasks.config import LakeConfig
from tasks.runtime import RunnerConfig, declare, in_lake, run_mapped
from tasks.tokenize import TokenizeConfig, commit_tokens, tokenize_shard


@flow(name="tokenize", log_prints=True)
def tokenize(
    lake: LakeConfig = LakeConfig(),
    config: TokenizeConfig = TokenizeConfig(),
    tokenizer: str = "bpe-4k",
    clean: str | None = None,
    crawl: str | None = None,
    runner: RunnerConfig = RunnerConfig(),
) -> dict[str, Any]:
    """Encode `clean` (default `curated/{crawl}/clean`) with `tokenizer` (a name under
    `tokenizers/` or a URI) into `tokens/{tokenizer}/{crawl}/`, where `crawl` defaults to
    the folder above `clean`; returns the train and val URIs and their token counts."""
    root = lake.open()
    if clean is None:
        clean = lakes.join(root, "curated", crawl or "sample", "clean")
    crawl = crawl or lakes.normalize(clean).rstrip("/").split("/")[-2]
    tok_uri = tokenizer if "/" in tokenizer else lakes.join(root, "tokenizers", tokenizer)
    lakes.manifest(tok_uri)  # a clear error now, not one per task, when it was never trained
    name = tok_uri.rstrip("/").rsplit("/", 1)[-1]
    out = lakes.join(root, "tokens", name, crawl)
    train_uri, val_uri = lakes.join(out, "train"), lakes.join(out, "val")

    shards = lakes.shard_uris(clean)
    parts = [f"part-{i:05d}" for i in range(len(shards))]
    results = run_mapped(
        in_lake(root, tokenize_shard),
        runner,
        f"tokenize {len(shards)} shards",
        key="tokenize-progress",
        shard=shards,
        tokenizer=unmapped(tok_uri),
        train_out=unmapped(train_uri),
        val_out=unmapped(val_uri),
        part=parts,
        config=unmapped(config),
    )

    vocab_size = Tokenizer.load(tok_uri).vocab_size
    parents = [clean, tok_uri]
    totals = {
        split: commit_tokens(uri, results, split, config=config, parents=parents, vocab_size=vocab_size)
        for split, uri in (("train", train_uri), ("val", val_uri))
    }
    declare(train_uri, val_uri)

    rows = [
        {"shard": part, "split": split, **{k: r[split][k] for k in ("documents", "tokens", "bytes", "skipped_empty")}}
        for part, r in zip(parts, results)
        for split in ("train", "val")
    ]
    rows += [{"shard": "total", "split": split, **{k: t[k] for k in ("documents", "tokens", "bytes", "skipped_empty")}} for split, t in totals.items()]
    for row in rows:
        row["bytes_per_token"] = round(row["bytes"] / max(row["tokens"], 1), 3)
    create_table_artifact(rows, key="tokenize-counts", description=f"tokens of {crawl} with {name}")
    for split, t in totals.items():
        print(f"{split}: {t['documents']:,} documents, {t['tokens']:,} tokens ({t['bytes_per_token']} bytes/token)")
    return {"tokenizer": tok_uri, **{split: {"uri": lakes.join(out, split), **t} for split, t in totals.items()}}
