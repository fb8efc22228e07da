"""Render conversations into token ids and loss masks, and pack them into training rows.

    conversations/{name}/{train,val} --pack_split--> conversations/{name}/rows/{tokenizer}-{T}/{train,val}

One task per split: it reads every conversation of the split, renders each with the chat
renderer (models/chat.py), shuffles them (seeded; the sources arrive one after another and a
row should mix them), packs them best-fit into rows of T+1 tokens (models/sft_data.py) and
writes the rows in shards. A conversation longer than a row is cut before a later user turn
(the longest run of whole turns that fits, kept when it has an assistant reply) and counted;
one that no cut fits is skipped and counted, as is one the renderer rejects (user data is
validated before it gets here, so that count is normally 0). With `users_share`, users'
conversations (rows whose source is not a generated one) are drawn, seeded, repeated or
thinned, to make up that share of the training rows.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from models import lake
from models.chat import render_conversation
from models.sft_data import pack
from models.tokenizer import Tokenizer

ROWS_PER_SHARD = 8192
KIND = "sft-rows"


def rows_schema(vocab_size: int) -> pa.Schema:
    ids = pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()
    return pa.schema([("tokens", pa.list_(ids)), ("mask", pa.list_(pa.uint8())), ("conversations", pa.int32())])


def fit(tokenizer: Tokenizer, messages: list[dict[str, Any]], seq_len: int) -> tuple[list[int], list[int], bool] | None:
    """(ids, mask, cut) of the conversation, or of its longest run of whole turns that fits a
    row of seq_len + 1 tokens (cut before a user message, with at least one assistant reply);
    None when not even the first turn fits."""
    ids, mask = render_conversation(tokenizer, messages)
    if len(ids) <= seq_len + 1:
        return ids, mask, False
    for end in reversed([i for i, m in enumerate(messages) if m["role"] == "user" and i > 0]):
        prefix = messages[:end]
        if any(m["role"] == "assistant" for m in prefix):
            ids, mask = render_conversation(tokenizer, prefix)
            if len(ids) <= seq_len + 1:
                return ids, mask, True
    return None


Rendered = tuple[np.ndarray, np.ndarray, bool]  # ids, mask, from a user's dataset


def render_split(conversations: str, tokenizer: Tokenizer, seq_len: int, stats: dict[str, Any]) -> list[Rendered]:
    """Every conversation of a dataset rendered (cut to fit a row where it must), in dataset
    order; the ones that cannot fit are counted."""
    from tasks.sft.generate import SOURCES

    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    skipped: Counter[str] = Counter()
    out = []
    cut = 0
    for batch in lake.iter_batches(conversations, columns=["source", "messages"], batch_size=1024):
        for source, messages in zip(batch.column("source").to_pylist(), batch.column("messages").to_pylist()):
            try:
                fitted = fit(tokenizer, messages, seq_len)
            except ValueError as exc:
                skipped[f"not renderable: {exc}"[:120]] += 1
                continue
            if fitted is None:
                skipped[f"first turn longer than a row of {seq_len + 1} tokens"] += 1
                continue
            ids, mask, was_cut = fitted
            cut += was_cut
            out.append((np.asarray(ids, dtype), np.asarray(mask, np.uint8), source not in SOURCES))
    stats["cut_at_a_turn"] = cut
    stats["skipped"] = dict(skipped)
    return out


def mix_users(rendered: list[Rendered], share: float, seed: int) -> list[Rendered]:
    """Users' conversations drawn (seeded, repeated or thinned) to be `share` of the result."""
    users = [r for r in rendered if r[2]]
    generated = [r for r in rendered if not r[2]]
    if not users or not generated:
        return rendered
    wanted = round(share / (1 - share) * len(generated))
    rng = random.Random(f"users:{seed}")
    drawn = [users[i % len(users)] for i in range(wanted)]
    rng.shuffle(drawn)
    return generated + drawn


def pack_split(
    conversations: str, tokenizer_uri: str, seq_len: int, out: str, seed: int, users_share: float | None = None
) -> dict[str, Any]:
    """Render, mix (users' share), shuffle, pack and write one split; returns the stats (and
    the shards)."""
    tokenizer = Tokenizer.load(tokenizer_uri)
    stats: dict[str, Any] = {"conversations": 0, "tokens": 0, "trained_tokens": 0}
    rendered = render_split(conversations, tokenizer, seq_len, stats)
    if users_share is not None:
        rendered = mix_users(rendered, users_share, seed)
    stats["users_conversations"] = sum(r[2] for r in rendered)
    stats["conversations"] = len(rendered)
    stats["tokens"] = sum(len(r[0]) for r in rendered)
    stats["trained_tokens"] = sum(int(r[1].sum()) for r in rendered)
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
    for tokens, mask, count in pack(((i.tolist(), m.tolist()) for i, m, _ in rendered), seq_len, tokenizer.pad_id):
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
