"""Training rows streamed from the lake's token shards, packed, split across ranks, prefetched.

The token datasets (`tokens/{tokenizer}/{crawl}/{split}`: columns id, tokens, count) are read
one Parquet row group at a time, so memory holds a row group and a few batches, never the
dataset. Each document becomes `<|bos|> + tokens`, and the documents of the whole dataset are
concatenated into one stream (epoch after epoch; with `shuffle`, each epoch visits the shards
in a seeded order). Row i of the stream is the window stream[i*T : i*T + T + 1]: inputs are its
first T tokens, targets its last T, so every token is a target exactly once per epoch.

Ranks split rows, not documents: global row i belongs to rank i % world_size. Every rank reads
the same stream (reading uint16 tokens costs next to nothing beside a training step) and keeps
its own rows, so a global batch holds the same rows whatever the number of processes: a run on
8 GPUs sees the batches a run on 1 GPU with 8x gradient accumulation would.

The position after a batch (epoch, shard, row group, offset in that row group's packed
tokens, rows so far) is a small JSON dict; a checkpoint stores it and `TokenLoader(...,
position=...)` resumes exactly there, opening only the shard it needs.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from models.lake import shard_uris
from models.storage import filesystem


@dataclass(frozen=True)
class Position:
    """Where the next row starts: `offset` tokens into row group `row_group` of the
    `shard`-th shard of epoch `epoch`'s order. `rows` counts global rows handed out."""

    epoch: int = 0
    shard: int = 0
    row_group: int = 0
    offset: int = 0
    rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def dataset_shards(datasets: Sequence[str]) -> list[str]:
    """The shards of several token datasets, in order (each from its manifest)."""
    shards = [uri for dataset in datasets for uri in shard_uris(dataset)]
    if not shards:
        raise ValueError(f"the token datasets {list(datasets)} have no shards")
    return shards


def packed_documents(tokens: pa.ChunkedArray | pa.Array, bos: int | None) -> np.ndarray:
    """One row group's documents as a flat array, each preceded by `bos` (when given)."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    flat = pc.list_flatten(tokens).to_numpy(zero_copy_only=False)
    if bos is None:
        return flat
    lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([0], np.cumsum(lengths[:-1], dtype=np.int64)))
    return np.insert(flat, starts, np.asarray(bos, dtype=flat.dtype))


def shard_order(n_shards: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n_shards))
    return np.random.default_rng([seed, epoch]).permutation(n_shards).tolist()


def row_groups(
    shards: Sequence[str],
    start: Position,
    bos: int | None,
    seed: int = 0,
    shuffle: bool = False,
    epochs: int | None = None,
) -> Iterator[tuple[Position, np.ndarray]]:
    """(position of its first token, packed tokens) for every row group from `start` on,
    epoch after epoch (`epochs=None`: forever). The first one is cut at `start.offset`."""
    epoch, first_shard, first_group, offset = start.epoch, start.shard, start.row_group, start.offset
    while epochs is None or epoch < epochs:
        whole_epoch = first_shard == first_group == offset == 0
        produced = False
        order = shard_order(len(shards), epoch, seed, shuffle)
        for k in range(first_shard, len(order)):
            fs, path = filesystem(shards[order[k]])
            with fs.open(path, "rb") as f:
                parquet = pq.ParquetFile(f)
                for g in range(first_group, parquet.num_row_groups):
                    tokens = packed_documents(parquet.read_row_group(g, columns=["tokens"]).column("tokens"), bos)
                    produced = produced or len(tokens) > 0
                    if len(tokens) > offset:
                        yield Position(epoch, k, g, offset), tokens[offset:]
                    offset = 0
            first_group = 0
        if whole_epoch and not produced:
            raise ValueError("the token datasets hold no tokens")
        epoch, first_shard = epoch + 1, 0


def token_rows(
    shards: Sequence[str],
    seq_len: int,
    start: Position,
    bos: int | None,
    seed: int = 0,
    shuffle: bool = False,
    epochs: int | None = None,
) -> Iterator[tuple[np.ndarray, Position]]:
    """Every global row (seq_len + 1 tokens) from `start` on, with the position after it."""
    pending: list[tuple[Position, np.ndarray]] = []  # unread row groups, the first cut at the position
    available = 0
    source = row_groups(shards, start, bos, seed, shuffle, epochs)
    rows = start.rows
    while True:
        while available < seq_len + 1:
            group = next(source, None)
            if group is None:
                return  # the last epoch ended: a final partial row is dropped
            pending.append(group)
            available += len(group[1])
        row = (
            np.concatenate([tokens for _, tokens in pending])[: seq_len + 1]
            if len(pending) > 1
            else pending[0][1][: seq_len + 1]
        )
        # Advance by seq_len (the row's last token is the next row's first input).
        skip = seq_len
        while skip >= len(pending[0][1]):
            skip -= len(pending[0][1])
            available -= len(pending[0][1])
            pending.pop(0)
        pos, tokens = pending[0]
        pending[0] = (Position(pos.epoch, pos.shard, pos.row_group, pos.offset + skip), tokens[skip:])
        available -= skip
        rows += 1
        yield row, Position(**{**asdict(pending[0][0]), "rows": rows})


def local_batches(
    shards: Sequence[str],
    batch_size: int,
    seq_len: int,
    start: Position,
    bos: int | None,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    shuffle: bool = False,
    epochs: int | None = None,
) -> Iterator[tuple[np.ndarray, Position]]:
    """This rank's batches: (batch_size, seq_len + 1) int64 rows and the global position after
    them. A batch consumes batch_size * world_size global rows; row i goes to rank i % world_size.
    A last incomplete batch is dropped, so every rank yields the same number of batches."""
    rows = token_rows(shards, seq_len, start, bos, seed, shuffle, epochs)
    while True:
        batch = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        for i in range(batch_size * world_size):
            item = next(rows, None)
            if item is None:
                return
            if i % world_size == rank:
                batch[i // world_size] = item[0]
        yield batch, item[1]


class TokenLoader:
    """Batches (x, y) of this rank, produced by a background thread `prefetch` batches ahead.

    `position` is the global position after the last batch handed out; a loader created with
    it continues exactly there. Iterate it, or call `next_batch()`; `close()` stops the thread.
    """

    def __init__(
        self,
        datasets: Sequence[str],
        batch_size: int,
        seq_len: int,
        bos: int | None,
        *,
        rank: int = 0,
        world_size: int = 1,
        position: Position | dict | None = None,
        seed: int = 0,
        shuffle: bool = False,
        epochs: int | None = None,
        device: torch.device | str = "cpu",
        prefetch: int = 4,
    ):
        start = Position(**position) if isinstance(position, dict) else position or Position()
        self.position = start
        self.device = torch.device(device)
        self._batches = local_batches(
            dataset_shards(datasets), batch_size, seq_len, start, bos, rank, world_size, seed, shuffle, epochs
        )
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="token-loader", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for batch, position in self._batches:
                tensor = torch.from_numpy(batch)
                if self.device.type == "cuda":
                    tensor = tensor.pin_memory()
                if not self._put((tensor, position)):
                    return
            self._put(StopIteration())
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        tensor, self.position = item
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor[:, :-1], tensor[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            try:
                yield self.next_batch()
            except StopIteration:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> TokenLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def token_counts(datasets: Sequence[str], vocab_size: int, max_tokens: int | None = None) -> np.ndarray:
    """How often each id occurs in the datasets' documents (the first `max_tokens` of them)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    seen = 0
    for _, tokens in row_groups(dataset_shards(datasets), Position(), bos=None, epochs=1):
        if max_tokens is not None:
            tokens = tokens[: max_tokens - seen]
        counts += np.bincount(tokens, minlength=vocab_size)[:vocab_size]
        seen += len(tokens)
        if max_tokens is not None and seen >= max_tokens:
            break
    return counts


def unigram_bits_per_byte(train_counts: np.ndarray, val_counts: np.ndarray, token_bytes: np.ndarray) -> float:
    """Bits per byte of validation tokens (`val_counts` of each id) under a unigram model of
    the training tokens: p(id) from training frequencies, add-one smoothed, over the ids that
    stand for bytes. The floor a language model must beat by using context at all."""
    has_bytes = np.asarray(token_bytes) > 0
    counts = np.where(has_bytes, train_counts + 1, 0).astype(np.float64)
    neg_log2 = np.zeros(len(counts))
    neg_log2[has_bytes] = -np.log2(counts[has_bytes] / counts.sum())
    val = np.where(has_bytes, val_counts, 0)
    total_bytes = float((val * token_bytes).sum())
    if total_bytes == 0:
        raise ValueError("no validation text to measure the unigram baseline on")
    return float((val * neg_log2).sum() / total_bytes)


def bits_per_byte(loss_sum_nats: float, byte_count: float) -> float:
    return loss_sum_nats / (math.log(2) * byte_count)
