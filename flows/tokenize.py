"""Encode a crawl's clean documents: `tokens/{tokenizer}/{crawl}/{train,val}/` (the tokenizer's name
under tokenizers/, `{run}/{name}` in a pipeline run), one task per shard."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from models import lake as lakes
from models.tokenizer import Tokenizer
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
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
    run: str | None = None,
) -> dict[str, Any]:
    """Encode `clean` (default `curated/{crawl}/clean`) with `tokenizer` (a name under
    `tokenizers/` or a URI there) into `tokens/{tokenizer}/{crawl}/`, where `crawl` defaults
    to the crawl `clean` belongs to (`run` names its artifacts); returns the train and val URIs and their token counts."""
    root = lake.open()
    layout = Layout(root)
    if clean is None:
        if crawl is None:
            raise ValueError("give the clean dataset or the crawl to tokenize")
        clean = layout.curated(crawl).clean
    crawl = crawl or layout.crawl_of(clean)
    tok_uri = tokenizer if layout.is_uri(tokenizer) else layout.tokenizer(None, tokenizer)
    lakes.manifest(tok_uri)  # a clear error now, not one per task, when it was never trained
    out = layout.tokens(tok_uri, crawl)
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
    rows += [
        {"shard": "total", "split": split, **{k: t[k] for k in ("documents", "tokens", "bytes", "skipped_empty")}}
        for split, t in totals.items()
    ]
    for row in rows:
        row["bytes_per_token"] = round(row["bytes"] / max(row["tokens"], 1), 3)
    create_table_artifact(
        rows,
        key=artifact_key("tokenize-counts", run and f"{run}-{crawl}"),
        description=f"tokens of {crawl} with {tok_uri}",
    )
    for split, t in totals.items():
        print(f"{split}: {t['documents']:,} documents, {t['tokens']:,} tokens ({t['bytes_per_token']} bytes/token)")
    return {
        "tokenizer": tok_uri,
        "uri": out,
        **{split: {"uri": lakes.join(out, split), **t} for split, t in totals.items()},
    }
