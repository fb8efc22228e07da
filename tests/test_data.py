"""The token loader: packing, exact resume, rank splitting, shuffling, streaming, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from models import lake
from models.data import (
    Position,
    TokenLoader,
    dataset_shards,
    local_batches,
    row_groups,
    token_counts,
    token_rows,
    unigram_bits_per_byte,
)

BOS = 0
SCHEMA = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.uint16())), ("count", pa.int32())])


def random_docs(n: int, seed: int = 0, max_len: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Some empty documents: they still mark a boundary (a lone <|bos|>).
    return [rng.integers(1, 500, rng.integers(0, max_len)).astype(np.uint16) for _ in range(n)]


def write_tokens(uri: str, docs: list[np.ndarray], per_shard: int = 20, per_group: int = 7) -> str:
    """A committed token dataset: shards of `per_shard` documents, row groups of `per_group`."""
    shards = []
    for s, start in enumerate(range(0, len(docs), per_shard)):
        part = docs[start : start + per_shard]
        batches = [
            pa.record_batch(
                [
                    pa.array([f"doc-{start + g + i}" for i in range(len(chunk))]),
                    pa.array([d.tolist() for d in chunk], type=pa.list_(pa.uint16())),
                    pa.array([len(d) for d in chunk], type=pa.int32()),
                ],
                schema=SCHEMA,
            )
            for g in range(0, len(part), per_group)
            for chunk in [part[g : g + per_group]]
        ]
        shards.append(lake.write_shard(uri, f"part-{s:05d}", iter(batches), schema=SCHEMA))
    lake.commit(uri, shards, kind="tokens")
    return uri


def stream_of(docs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.concatenate([[BOS], d]) for d in docs]).astype(np.int64)


@pytest.fixture
def docs() -> list[np.ndarray]:
    return random_docs(70)


@pytest.fixture
def dataset(tmp_path, docs) -> str:
    return write_tokens(str(tmp_path / "tokens" / "train"), docs)


def test_rows_are_windows_of_the_packed_stream_on_local_disk_and_s3(lake_root, docs):
    uri = write_tokens(lake.join(lake_root, "tokens", "t", "c", "train"), docs)
    stream, T = stream_of(docs), 16
    rows = list(token_rows(dataset_shards([uri]), T, Position(), BOS, epochs=1))
    assert len(rows) == (len(stream) - 1) // T  # the final partial row is dropped
    for i, (row, _) in enumerate(rows):
        np.testing.assert_array_equal(row, stream[i * T : i * T + T + 1])
    # Every document starts with <|bos|>: the count of boundaries is the count of documents.
    assert (stream == BOS).sum() == len(docs)


def test_resuming_from_any_position_continues_exactly(dataset):
    T = 9
    rows = list(token_rows(dataset_shards([dataset]), T, Position(), BOS, epochs=2))
    # Positions inside row groups, at their ends, across shards and across the epoch boundary.
    for i in [0, 1, 5, 17, len(rows) // 2 - 1, len(rows) // 2, len(rows) - 3]:
        rest = list(token_rows(dataset_shards([dataset]), T, rows[i][1], BOS, epochs=2))
        assert len(rest) == len(rows) - i - 1
        for (a, pa_), (b, pb) in zip(rest, rows[i + 1 :]):
            np.testing.assert_array_equal(a, b)
            assert pa_ == pb


def test_ranks_see_disjoint_rows_whose_union_is_every_row(dataset):
    T, B, world = 8, 3, 3
    shards = dataset_shards([dataset])
    single = [row for row, _ in token_rows(shards, T, Position(), BOS, epochs=1)]
    per_rank = [
        list(local_batches(shards, B, T, Position(), BOS, rank=r, world_size=world, epochs=1)) for r in range(world)
    ]
    assert len({len(batches) for batches in per_rank}) == 1  # the same number of steps on every rank
    n_batches = len(per_rank[0])
    assert n_batches == len(single) // (B * world)
    seen = {}
    for r, batches in enumerate(per_rank):
        for b, (batch, _) in enumerate(batches):
            for j, row in enumerate(batch):
                global_index = (b * B + j) * world + r
                np.testing.assert_array_equal(row, single[global_index])
                assert global_index not in seen
                seen[global_index] = r
    assert sorted(seen) == list(range(n_batches * B * world))  # union = every row of those steps
    # All ranks agree on the position after each batch (one global position per step).
    for b in range(n_batches):
        assert len({per_rank[r][b][1] for r in range(world)}) == 1


def test_shuffled_epochs_are_seeded_and_cover_every_document(dataset, docs):
    shards = dataset_shards([dataset])
    assert len(shards) == 4

    def epochs(seed: int) -> list[list[tuple[Position, np.ndarray]]]:
        groups = list(row_groups(shards, Position(), BOS, seed=seed, shuffle=True, epochs=3))
        return [[g for g in groups if g[0].epoch == e] for e in range(3)]

    a, b = epochs(1), epochs(1)
    assert [[p for p, _ in e] for e in a] == [[p for p, _ in e] for e in b]  # seeded: the same order
    streams = [np.concatenate([t for _, t in e]) for e in a]
    assert len({s.tobytes() for s in streams}) > 1  # but each epoch its own order
    for s in streams:  # and every epoch holds every document exactly once
        np.testing.assert_array_equal(np.sort(s), np.sort(stream_of(docs)))
    unshuffled = np.concatenate([t for _, t in row_groups(shards, Position(), BOS, epochs=1)])
    np.testing.assert_array_equal(unshuffled, stream_of(docs))


def test_loader_prefetches_the_same_batches_and_resumes_from_its_position(dataset):
    shards = dataset_shards([dataset])
    expected = [b for b, _ in itertools.islice(local_batches(shards, 2, 8, Position(), BOS), 12)]
    with TokenLoader([dataset], 2, 8, BOS, prefetch=3) as loader:
        got = [loader.next_batch() for _ in range(5)]
        position = loader.position
    for (x, y), batch in zip(got, expected):
        np.testing.assert_array_equal(x.numpy(), batch[:, :-1])
        np.testing.assert_array_equal(y.numpy(), batch[:, 1:])
    assert position.rows == 10
    with TokenLoader([dataset], 2, 8, BOS, position=position.to_dict()) as resumed:
        x, y = resumed.next_batch()
    np.testing.assert_array_equal(x.numpy(), expected[5][:, :-1])


def test_loader_streams_row_groups_lazily(tmp_path, docs):
    """The loader reads row groups as it needs them: batches from the first shard come out
    even though a later shard is gone, and the loss surfaces only when it is reached."""
    uri = write_tokens(str(tmp_path / "t"), docs)
    lake.filesystem(lake.shard_uris(uri)[-1])[0].rm(lake.shard_uris(uri)[-1])
    with TokenLoader([uri], 2, 8, BOS, epochs=1, prefetch=1) as loader:
        loader.next_batch()
        with pytest.raises(FileNotFoundError):
            while True:
                loader.next_batch()


def test_finite_loader_stops_and_drops_the_partial_batch(dataset, docs):
    T, B = 8, 4
    rows = (len(stream_of(docs)) - 1) // T
    with TokenLoader([dataset], B, T, BOS, epochs=1) as loader:
        assert len(list(loader)) == rows // B


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never committed"):
        dataset_shards([str(tmp_path / "missing")])
    uri = str(tmp_path / "none")
    lake.commit(uri, [lake.write_shard(uri, "part-00000", SCHEMA.empty_table())], kind="tokens")
    with pytest.raises(ValueError, match="hold no tokens"):
        next(token_rows(dataset_shards([uri]), 4, Position(), BOS))


def test_unigram_bits_per_byte_by_hand():
    token_bytes = np.array([0, 1, 2, 4])  # id 0 is a special (no bytes): outside the model
    train = np.array([100, 1, 3, 0])
    val = np.array([7, 2, 1, 1])
    # add-one over the byte-bearing ids: p = (2, 4, 1) / 7
    bits = 2 * -np.log2(2 / 7) + 1 * -np.log2(4 / 7) + 1 * -np.log2(1 / 7)
    assert unigram_bits_per_byte(train, val, token_bytes) == pytest.approx(bits / (2 * 1 + 2 + 4))


def test_token_counts_stop_at_the_budget(dataset, docs):
    counts = token_counts([dataset], 500)
    assert counts.sum() == sum(len(d) for d in docs)
    np.testing.assert_array_equal(counts, np.bincount(np.concatenate(docs), minlength=500))
    assert token_counts([dataset], 500, max_tokens=50).sum() == 50
