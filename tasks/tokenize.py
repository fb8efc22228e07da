"""Tokenizer training and corpus tokenization: the tasks, their configs and pure helpers.

- `train_tokenizer` samples clean documents (a bounded, deterministic sample), trains the
  sentencepiece BPE of `models.tokenizer` on them and commits `tokenizers/{name}/`: the
  model file plus a `vocab` shard (id, piece, kind, bytes) that polars can read.
- `tokenize_shard` encodes one shard of clean documents into one shard of
  `tokens/{tokenizer}/{crawl}/train` and one of `.../val`, streaming batch by batch.

The train/validation split is a property of a document id alone (a hash compared with the
validation fraction), so a document lands in the same split whatever the tokenizer, the
shard layout or the run, and the tokenizer's sample never includes validation documents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from models import lake
from models.hashing import unit
from models.tokenizer import Tokenizer, train
from tasks.runtime import StageConfig, code_version, config_hash, flow_run_id, lake_task

CODE = ("tasks.tokenize", "models.tokenizer")


class TokenizerConfig(StageConfig):
    name: str = Field("bpe-4k", description="Stored as tokenizers/{name}/ in the lake")
    vocab_size: int = Field(4096, ge=320, le=1 << 20, description="Pieces, including 256 byte tokens and the specials")
    sample_chars: int = Field(
        20_000_000, ge=1000, description="Characters of documents the trainer sees: its memory bound"
    )
    doc_chars: int = Field(10_000, ge=100, description="Each sampled document is cropped to this many characters")
    character_coverage: float | None = Field(
        None,
        ge=0.98,
        le=1.0,
        description="Share of characters with a piece of their own (the rest are bytes); none: by vocab_size",
    )
    threads: int = Field(1, ge=1, description="Training threads")
    seed: int = Field(0, description="Which documents are sampled")

    @model_validator(mode="after")
    def _one_document_fits(self) -> TokenizerConfig:
        if self.sample_chars < self.doc_chars:
            raise ValueError("sample_chars must be at least doc_chars")
        return self


class TokenizeConfig(StageConfig):
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Share of documents (by id hash) held out for validation"
    )
    batch_docs: int = Field(
        512, ge=1, description="Documents read, encoded and written at a time: a task's memory bound"
    )
    threads: int = Field(1, ge=0, description="Encoder threads per task (0: every core)")


# -- the split and the sample ------------------------------------------------------------


def doc_hash(doc_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) that depends on the id (and salt) alone."""
    return unit(f"{salt}\0{doc_id}")


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Validation documents are the top `val_fraction` of the unsalted hash."""
    return doc_hash(doc_id) >= 1.0 - val_fraction


def sample_documents(
    clean_uri: str | list[str], config: TokenizerConfig, holdout: float
) -> tuple[list[str], dict[str, int]]:
    """The training sample: documents in order of a salted hash of their id, cropped to
    `doc_chars`, as many as fit in `sample_chars`; never one of the `holdout` validation
    documents.

    One streaming pass with a heap bounded by the budget, so memory is the sample's size
    whatever the corpus's. Once a document is evicted, nothing with a larger key can get
    in, which makes the result exactly that shortest-keys prefix, whatever the order of
    documents and shards.
    """
    heap: list[tuple[float, str, str]] = []  # (-key, id, cropped text): the largest key on top
    chars = seen = held_out = 0
    cutoff = 1.0  # keys at or above it cannot be in the sample
    salt = f"tokenizer-sample-{config.seed}"
    batches = (
        b
        for uri in ([clean_uri] if isinstance(clean_uri, str) else clean_uri)
        for b in lake.iter_batches(uri, columns=["id", "text"], batch_size=1024)
    )
    for batch in batches:
        for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
            seen += 1
            if not text:
                continue
            if is_validation(doc_id, holdout):
                held_out += 1
                continue
            key = doc_hash(doc_id, salt)
            if key >= cutoff:
                continue
            text = text[: config.doc_chars]
            heapq.heappush(heap, (-key, doc_id, text))
            chars += len(text)
            while chars > config.sample_chars:
                neg_key, _, evicted = heapq.heappop(heap)
                chars -= len(evicted)
                cutoff = -neg_key
    docs = [text for _, _, text in sorted(heap, reverse=True)]  # smallest key first
    return docs, {
        "documents_seen": seen,
        "documents_held_out": held_out,
        "documents_sampled": len(docs),
        "chars_sampled": chars,
    }


# -- the tokenizer -----------------------------------------------------------------------

VOCAB_SCHEMA = pa.schema([("id", pa.int32()), ("piece", pa.string()), ("kind", pa.string()), ("bytes", pa.int32())])


def vocab_table(tok: Tokenizer) -> pa.Table:
    ids = range(tok.vocab_size)
    return pa.table(
        {
            "id": list(ids),
            "piece": [tok.id_to_piece(i) for i in ids],
            "kind": [tok.piece_kind(i) for i in ids],
            "bytes": tok.token_bytes,
        },
        schema=VOCAB_SCHEMA,
    )


@lake_task(inputs=("clean",), code=CODE)
def train_tokenizer(clean: str | list[str], out: str, config: TokenizerConfig, holdout: float) -> dict[str, Any]:
    """Sample (from one clean dataset or several crawls'), train, and commit `out` (a
    `tokenizers/...` folder). Returns its stats."""
    docs, stats = sample_documents(clean, config, holdout)
    if not docs:
        raise ValueError(
            f"{clean} has no training documents (of {stats['documents_seen']}, {stats['documents_held_out']} held out)"
        )
    started = time.perf_counter()
    tok = train(docs, config.vocab_size, character_coverage=config.character_coverage, threads=config.threads)
    stats["train_seconds"] = round(time.perf_counter() - started, 3)
    sample_bytes = sum(len(d.encode()) for d in docs)
    sample_tokens = sum(map(len, tok.encode_batch(docs, threads=config.threads)))
    stats.update(
        vocab_size=tok.vocab_size,
        sample_bytes=sample_bytes,
        bytes_per_token=round(sample_bytes / max(sample_tokens, 1), 4),
        specials=tok.specials,
        model_sha256=hashlib.sha256(tok.model_proto).hexdigest(),
    )
    stats["model_file"] = PurePosixPath(tok.save(out, versioned=True)).name  # committed by the manifest below
    shard = lake.write_shard(out, "vocab", vocab_table(tok))
    lake.commit(
        out,
        [shard],
        kind="tokenizer",
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=[clean] if isinstance(clean, str) else clean,
        stats=stats,
    )
    return {"uri": lake.normalize(out), **stats}


# -- tokenizing shards -------------------------------------------------------------------


def token_type(vocab_size: int) -> pa.DataType:
    """The smallest unsigned integer that holds every id."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


def tokens_schema(vocab_size: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("tokens", pa.list_(token_type(vocab_size))), ("count", pa.int32())])


def _encoded_batches(
    shard: str, tok: Tokenizer, config: TokenizeConfig, validation: bool, stats: dict[str, int]
) -> Iterator[pa.RecordBatch]:
    """Record batches of one split of `shard`: read, encode and yield `batch_docs` at a time."""
    schema = tokens_schema(tok.vocab_size)
    fs, path = lake.filesystem(shard)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=config.batch_docs, columns=["id", "text"]):
            ids, texts = [], []
            for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
                if is_validation(doc_id, config.val_fraction) != validation:
                    continue
                if not text:
                    stats["skipped_empty"] += 1
                    continue
                ids.append(doc_id)
                texts.append(text)
            if not ids:
                continue
            encoded = tok.encode_batch(texts, threads=config.threads)
            counts = [len(e) for e in encoded]
            stats["documents"] += len(ids)
            stats["tokens"] += sum(counts)
            stats["bytes"] += sum(len(t.encode()) for t in texts)
            yield pa.record_batch(
                [
                    pa.array(ids, pa.string()),
                    pa.array(encoded, schema.field("tokens").type),
                    pa.array(counts, pa.int32()),
                ],
                schema=schema,
            )


@lake_task(inputs=("shard", "tokenizer"), code=CODE)
def tokenize_shard(
    shard: str, tokenizer: str, train_out: str, val_out: str, part: str, config: TokenizeConfig
) -> dict[str, Any]:
    """Encode one clean shard into shard `part` of `train_out` and of `val_out`.

    Each split is one streaming pass (the split is by id, so every document is encoded
    once): memory holds one batch, never the shard.
    """
    tok = Tokenizer.load(tokenizer)
    out: dict[str, Any] = {}
    for split, uri in (("train", train_out), ("val", val_out)):
        stats = {"documents": 0, "tokens": 0, "bytes": 0, "skipped_empty": 0}
        batches = _encoded_batches(shard, tok, config, split == "val", stats)
        written = lake.write_shard(uri, part, batches, schema=tokens_schema(tok.vocab_size))
        out[split] = {"shard": dataclasses.asdict(written), **stats}
    return out


def commit_tokens(
    uri: str, results: list[dict[str, Any]], split: str, *, config: TokenizeConfig, parents: list[str], vocab_size: int
) -> dict[str, Any]:
    """Commit one split of the token dataset from its shards' results; returns its totals."""
    parts = [r[split] for r in results]
    totals = {k: sum(p[k] for p in parts) for k in ("documents", "tokens", "bytes", "skipped_empty")}
    totals["bytes_per_token"] = round(totals["bytes"] / max(totals["tokens"], 1), 4)
    stats = {**totals, "vocab_size": vocab_size, "dtype": str(token_type(vocab_size)), "split": split}
    lake.commit(
        uri,
        [lake.Shard(**p["shard"]) for p in parts],
        kind="tokens",
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=parents,
        stats=stats,
    )
    return stats
