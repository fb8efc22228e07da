"""SFT rows: rendered conversations packed into fixed-length rows with loss masks.

Packing (`pack`) is best-fit, as nanochat's SFT loader does it: keep a buffer of rendered
conversations; fill each row of `seq_len + 1` tokens with the longest conversation that
still fits, again and again; when none fits, pad the rest of the row with <|pad|> (mask 0).
A conversation is never cut, so every trained token keeps its whole context, and rows waste
little (the padding share is in the stats). Conversations in a row attend to the earlier
ones in it (plain causal attention, as nanochat and TRL's padding-free packing without
varlen kernels do); each starts with <|bos|>, which the model learned as a boundary.

Packing is a data step (tasks/sft/pack.py writes the rows to the lake), so training reads
fixed rows: `PackedLoader` visits the shards in a seeded order each epoch and the rows of a
shard in a seeded order, hands global row i to rank i % world_size (a global batch holds the
same rows whatever the number of processes, like models/data.py), and its position (epoch,
shard, row) resumes a run exactly. Targets are the next tokens, -1 where the mask is 0 (the
loss ignores them: models/gpt.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from models.data import Position, dataset_shards, shard_order
from models.storage import filesystem

Rendered = tuple[Sequence[int], Sequence[int]]  # (ids, mask) of one conversation


def pack(
    conversations: Iterable[Rendered], seq_len: int, pad_id: int, buffer: int = 100
) -> Iterator[tuple[list[int], list[int], int]]:
    """(tokens, mask, conversations in the row) rows of exactly seq_len + 1 tokens, best fit.

    The result depends only on the input order, so packing is reproducible. A conversation
    longer than a row is a ValueError: the caller drops it and counts it first."""
    capacity = seq_len + 1
    source = iter(conversations)
    pending: list[Rendered] = []

    def refill() -> None:
        while len(pending) < buffer:
            item = next(source, None)
            if item is None:
                return
            if len(item[0]) > capacity:
                raise ValueError(f"a conversation of {len(item[0])} tokens does not fit a row of {capacity}")
            pending.append(item)

    refill()
    while pending:
        tokens: list[int] = []
        mask: list[int] = []
        count = 0
        while True:
            refill()
            room = capacity - len(tokens)
            fits = [i for i, (ids, _) in enumerate(pending) if len(ids) <= room]
            if not fits:
                break
            ids, bits = pending.pop(max(fits, key=lambda i: len(pending[i][0])))
            tokens.extend(ids)
            mask.extend(bits)
            count += 1
        padding = capacity - len(tokens)
        yield tokens + [pad_id] * padding, mask + [0] * padding, count


def shift(rows: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of (B, T+1) rows: targets are -1 where the mask says not to train."""
    x = torch.from_numpy(rows[:, :-1].astype(np.int64))
    y = rows[:, 1:].astype(np.int64)
    y[masks[:, 1:] == 0] = -1
    return x, torch.from_numpy(y)


def _read_shard(uri: str) -> tuple[np.ndarray, np.ndarray]:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=["tokens", "mask"])
    n = table.num_rows
    if n == 0:
        return np.empty((0, 0), np.int64), np.empty((0, 0), np.uint8)
    tokens = pc.list_flatten(table.column("tokens")).to_numpy(zero_copy_only=False).reshape(n, -1)
    masks = pc.list_flatten(table.column("mask")).to_numpy(zero_copy_only=False).reshape(n, -1)
    return tokens, masks


class PackedLoader:
    """(x, y) batches of packed SFT rows for this rank; see the module docstring."""

    def __init__(
        self,
        datasets: Sequence[str],
        batch_size: int,
        seq_len: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        position: Position | dict | None = None,
        seed: int = 0,
        shuffle: bool = True,
        epochs: int | None = None,
        device: torch.device | str = "cpu",
    ):
        self.shards = dataset_shards(datasets)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle, self.epochs = seed, shuffle, epochs
        self.device = torch.device(device)
        self.position = Position(**position) if isinstance(position, dict) else position or Position()
        self._rows = self._global_rows()
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _shard(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != index:
            tokens, masks = _read_shard(self.shards[index])
            if tokens.size and tokens.shape[1] != self.seq_len + 1:
                raise ValueError(
                    f"{self.shards[index]} has rows of {tokens.shape[1]} tokens; this model needs {self.seq_len + 1}"
                )
            self._cached = (index, tokens, masks)
        return self._cached[1], self._cached[2]

    def _global_rows(self) -> Iterator[tuple[np.ndarray, np.ndarray, Position]]:
        """Every global row from the position on, with the position after it."""
        start = self.position
        epoch, first_shard, first_row, rows = start.epoch, start.shard, start.offset, start.rows
        while self.epochs is None or epoch < self.epochs:
            whole_epoch, produced = first_shard == first_row == 0, False
            order = shard_order(len(self.shards), epoch, self.seed, self.shuffle)
            for k in range(first_shard, len(order)):
                tokens, masks = self._shard(order[k])
                n = len(tokens)
                within = (
                    np.random.default_rng([self.seed, epoch, order[k]]).permutation(n) if self.shuffle else np.arange(n)
                )
                for r in range(first_row, n):
                    rows += 1
                    produced = True
                    yield tokens[within[r]], masks[within[r]], Position(epoch, k, 0, r + 1, rows)
                first_row = 0
            if whole_epoch and not produced:
                raise ValueError("the SFT row datasets hold no rows")
            epoch, first_shard = epoch + 1, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked_tokens, picked_masks = [], []
        for i in range(self.batch_size * self.world_size):
            item = next(self._rows, None)
            if item is None:
                raise StopIteration
            tokens, masks, after = item
            if i % self.world_size == self.rank:
                picked_tokens.append(tokens)
                picked_masks.append(masks)
        self.position = replace(after)
        x, y = shift(np.stack(picked_tokens), np.stack(picked_masks))
        return x.to(self.device), y.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            try:
                yield self.next_batch()
            except StopIteration:
                return

    def close(self) -> None:
        self._cached = None

    def __enter__(self) -> PackedLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
