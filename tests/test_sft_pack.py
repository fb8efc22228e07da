"""models/sft_data.py and tasks/sft/pack.py: best-fit packing that never cuts a
conversation, masked targets, and a loader that resumes exactly and splits rows by rank."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from models import lake
from models.chat import render_conversation
from models.sft_data import PackedLoader, pack, shift
from tasks.sft.pack import fit, pack_split
from tasks.sft.schema import row, to_table
from tests.support import sft_world

PAD = 99


def conv(n: int, tag: int) -> tuple[list[int], list[int]]:
    """A conversation of n tokens, all `tag`, trained on its second half."""
    return [tag] * n, [0] * (n // 2) + [1] * (n - n // 2)


def test_best_fit_fills_rows_with_the_longest_that_fits_and_pads_the_rest():
    rows = list(pack([conv(6, 1), conv(3, 2), conv(4, 3), conv(2, 4), conv(9, 5)], seq_len=9, pad_id=PAD, buffer=10))
    # Row capacity 10: 9 alone (+1 pad); then 6 + 4; then 3 + 2 (+5 pad).
    assert [r[0] for r in rows] == [[5] * 9 + [PAD], [1] * 6 + [3] * 4, [2] * 3 + [4] * 2 + [PAD] * 5]
    assert [r[2] for r in rows] == [1, 2, 2]
    assert rows[0][1] == conv(9, 5)[1] + [0]  # the pad is never trained
    assert all(len(t) == len(m) == 10 for t, m, _ in rows)


def test_every_token_of_every_conversation_lands_in_exactly_one_row_uncut():
    rng = np.random.default_rng(0)
    convs = [conv(int(n), i) for i, n in enumerate(rng.integers(1, 33, size=200), start=1)]
    rows = list(pack(convs, seq_len=32, pad_id=0, buffer=8))
    found: dict[int, int] = {}
    for tokens, _, _ in rows:
        for t in tokens:
            if t:
                found[t] = found.get(t, 0) + 1
    assert found == {i: len(c[0]) for i, c in enumerate(convs, start=1)}
    for tokens, _, _ in rows:  # a conversation's tokens are contiguous in one row
        runs = [t for i, t in enumerate(tokens) if t and (i == 0 or tokens[i - 1] != t)]
        assert len(runs) == len(set(runs))
    assert sum(t.count(0) for t, _, _ in rows) / (len(rows) * 33) < 0.1  # best fit wastes little


def test_a_conversation_longer_than_a_row_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        list(pack([conv(12, 1)], seq_len=10, pad_id=0))


def test_targets_are_next_tokens_and_minus_one_outside_the_mask():
    x, y = shift(np.array([[5, 6, 7, 8]]), np.array([[0, 0, 1, 1]]))
    assert x.tolist() == [[5, 6, 7]] and y.tolist() == [[-1, 7, 8]]


def write_rows(uri: str, n: int, seq_len: int) -> None:
    import pyarrow as pa

    tokens = [[i] * (seq_len + 1) for i in range(n)]
    masks = [[1] * (seq_len + 1) for _ in range(n)]
    lake.write_dataset(
        uri,
        [
            pa.table({"tokens": tokens[: n // 2], "mask": masks[: n // 2]}),
            pa.table({"tokens": tokens[n // 2 :], "mask": masks[n // 2 :]}),
        ],
        kind="sft-rows",
    )


def test_the_loader_resumes_exactly_and_ranks_share_the_global_batch(tmp_path):
    uri = str(tmp_path / "rows")
    write_rows(uri, 10, seq_len=4)
    one = PackedLoader([uri], 2, 4, seed=3)
    seen = [one.next_batch()[0][:, 0].tolist() for _ in range(7)]  # past one epoch of 10 rows
    assert sorted(sum(seen[:5], [])) == list(range(10))  # an epoch visits every row once
    resumed = PackedLoader([uri], 2, 4, seed=3, position=PackedLoader([uri], 2, 4, seed=3).position)
    assert [resumed.next_batch()[0][:, 0].tolist() for _ in range(3)] == seen[:3]
    head = PackedLoader([uri], 2, 4, seed=3)
    for _ in range(3):
        head.next_batch()
    tail = PackedLoader([uri], 2, 4, seed=3, position=head.position.to_dict())
    assert [tail.next_batch()[0][:, 0].tolist() for _ in range(4)] == seen[3:]
    ranks = [PackedLoader([uri], 1, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert [sorted(sum((rk.next_batch()[0][:, 0].tolist() for rk in ranks), [])) for _ in range(3)] == [
        sorted(b) for b in seen[:3]
    ]
    with pytest.raises(ValueError, match="needs 9"):
        PackedLoader([uri], 2, 8).next_batch()


def test_one_epoch_ends_and_an_empty_dataset_is_an_error(tmp_path):
    uri = str(tmp_path / "rows")
    write_rows(uri, 6, seq_len=4)
    batches = list(PackedLoader([uri], 2, 4, epochs=1, shuffle=False))
    assert [b[0][:, 0].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    assert all(torch.equal(x[:, 1:], y[:, :-1]) for x, y in batches)
    empty = str(tmp_path / "empty")
    lake.write_dataset(empty, [], kind="sft-rows")
    with pytest.raises(ValueError):
        PackedLoader([empty], 2, 4).next_batch()


def test_pack_split_renders_shuffles_packs_and_counts_what_does_not_fit(tmp_path):
    w = sft_world.world()
    tok_uri = str(tmp_path / "tok")
    sft_world.tokenizer(w).save(tok_uri)

    def short(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]

    long = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]
    convs = str(tmp_path / "convs")
    lake.write_dataset(
        convs, [to_table([row(f"c{i}", "t", short(i) if i < 30 else long) for i in range(32)])], kind="conversations"
    )
    stats = pack_split(convs, tok_uri, 64, str(tmp_path / "rows"), seed=0)
    assert stats["conversations"] == 30 and stats["skipped"] == {"first turn longer than a row of 65 tokens": 2}
    shards = [lake.Shard(**s) for s in stats.pop("shards")]
    lake.commit(str(tmp_path / "rows"), shards, kind="sft-rows")
    table = lake.scan(str(tmp_path / "rows")).collect()
    assert table.height == stats["rows"] and int(table["conversations"].sum()) == 30
    assert all(len(t) == 65 for t in table["tokens"].to_list())
    again = pack_split(convs, tok_uri, 64, str(tmp_path / "rows2"), seed=0)
    assert again.pop("shards") == [asdict(s) for s in shards]  # the same rows, byte for byte
    assert again == stats


def test_a_long_conversation_is_cut_at_a_turn_boundary_and_users_data_mixes_at_its_share(tmp_path):
    w = sft_world.world()
    tok_uri = str(tmp_path / "tok")
    tok = sft_world.tokenizer(w)
    tok.save(tok_uri)
    turns = [
        m
        for i in range(6)
        for m in ({"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."})
    ]
    fitted = fit(tok, turns, 40)
    whole = len(render_conversation(tok, turns)[0])
    assert whole > 41 and fitted is not None and fitted[2]  # too long whole: cut
    ids, mask, _ = fitted
    assert len(ids) <= 41 and sum(mask) > 0
    longest = max(end for end in range(2, 12, 2) if len(render_conversation(tok, turns[:end])[0]) <= 41)
    assert ids == render_conversation(tok, turns[:longest])[0]  # the most whole turns that fit, ending on a reply
    assert fit(tok, turns[:2], 40)[2] is False  # one that fits is left alone
    assert fit(tok, [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}], 40) is None

    def short(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]

    convs = str(tmp_path / "mixed")
    rows = [row(f"g{i}", "math", short(i)) for i in range(30)] + [
        row(f"u{i}", "/data/mine.jsonl", short(100 + i)) for i in range(4)
    ]
    rows.append(row("u-long", "/data/mine.jsonl", turns))
    lake.write_dataset(convs, [to_table(rows)], kind="conversations")
    plain = pack_split(convs, tok_uri, 40, str(tmp_path / "r1"), seed=0)
    assert (plain["conversations"], plain["users_conversations"], plain["cut_at_a_turn"]) == (35, 5, 1) and plain[
        "skipped"
    ] == {}
    mixed = pack_split(convs, tok_uri, 40, str(tmp_path / "r2"), seed=0, users_share=0.25)
    assert (mixed["conversations"], mixed["users_conversations"]) == (40, 10)  # 10 of 40: a quarter, users' 5 repeated
    thinned = pack_split(convs, tok_uri, 40, str(tmp_path / "r3"), seed=0, users_share=0.0625)
    assert thinned["users_conversations"] == 2
