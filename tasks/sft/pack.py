"""Render conversations into token ids and loss masks, and pack them into training rows.

    conversations/{name}/{train,val} --pack_split--> conversations/{name}/rows/{tokenizer}-{T}/{train,val}

One task per split: it reads every conversation of the split, renders each with the chat
renderer (models/chat.py), shuffles them (seeded; the sources arrive one after another and a
row should mix them), packs them best-fit into rows of T+1 tokens (models/sft_data.py) and
writes the rows in shards. A conversation longer than a row is skipped and counted; one the
renderer rejects is counted with its reason (user data is validated before it gets here, so
that count is normally 0).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from models.chat import render_conversation
from models.sft_data import pack
from models.tokenizer import Tokenizer
from tasks import lake

ROWS_PER_SHARD = 8192
KIND = "sft-rows"


def rows_schema(vocab_size: int) -> pa.Schema:
    ids = pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()
    return pa.schema([("tokens", pa.list_(ids)), ("mask", pa.list_(pa.uint8())), ("conversations", pa.int32())])


def render_split(conversations: str, tokenizer: Tokenizer, seq_len: int, stats: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every conversation of a dataset rendered, in dataset order; too long ones counted."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    skipped: Counter[str] = Counter()
    out = []
    for batch in lake.iter_batches(conversations, columns=["messages"], batch_size=1024):
        for messages in batch.column("messages").to_pylist():
            try:
                ids, mask = render_conversation(tokenizer, messages)
            except ValueError as exc:
                skipped[f"not renderable: {exc}"[:120]] += 1
                continue
            if len(ids) > seq_len + 1:
                skipped[f"longer than a row of {seq_len + 1} tokens"] += 1
                continue
            out.append((np.asarray(ids, dtype), np.asarray(mask, np.uint8)))
            stats["trained_tokens"] += int(sum(mask))
            stats["tokens"] += len(ids)
    stats["conversations"] += len(out)
    stats["skipped"] = dict(skipped)
    return out


def pack_split(conversations: str, tokenizer_uri: str, seq_len: int, out: str, seed: int) -> dict[str, Any]:
    """Render, shuffle, pack and write one split; returns the stats (and the shards)."""
    tokenizer = Tokenizer.load(tokenizer_uri)
    stats: dict[str, Any] = {"conversations": 0, "tokens": 0, "trained_tokens": 0}
    rendered = render_split(conversations, tokenizer, seq_len, stats)
    random.Random(f"pack:{seed}").shuffle(rendered)
    schema = rows_schema(tokenizer.vocab_size)
    shards: list[lake.Shard] = []
    buffer: dict[str, list[Any]] = {"tokens": [], "mask": [], "conversations": []}

    def flush() -> None:
        if buffer["tokens"]:
            shards.append(lake.write_shard(out, f"part-{len(shards):05d}", pa.Table.from_pydict(buffer, schema=schema)))
            for column in buffer.values():
                column.clear()

    rows = 0
    for tokens, mask, count in pack(((i.tolist(), m.tolist()) for i, m in rendered), seq_len, tokenizer.pad_id):
        buffer["tokens"].append(tokens)
        buffer["mask"].append(mask)
        buffer["conversations"].append(count)
        rows += 1
        if len(buffer["tokens"]) == ROWS_PER_SHARD:
            flush()
    flush()
    capacity = rows * (seq_len + 1)
    stats.update(rows=rows, seq_len=seq_len, padding=round(1 - stats["tokens"] / capacity, 4) if capacity else 0.0)
    return {"shards": [asdict(s) for s in shards], **stats}
