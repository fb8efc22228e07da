"""MinHash dedup logic without Prefect: normalisation, datasketch equivalence, the LSH S-curve,
union-find and the keep rule."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.dedup import DedupConfig
from tasks.dedup.apply import split_removed
from tasks.dedup.clusters import choose_kept, components, duplicate_edges, size_histogram, union_find
from tasks.dedup.minhash import Signer, band_hashes, candidate_probability, normalize_text, shingle, shingle_hash
from tasks.dedup.synthetic import jaccard, jaccard_pairs, shingle_sets

# -- normalisation ----------------------------------------------------------------------------


def test_normalisation_folds_case_digits_punctuation_accents_and_whitespace():
    text = "Héllo,  WORLD!\tIt's 3.14 — in 2024…\n\nNAÏVE café (ÉTÉ) x+y=z"
    assert normalize_text(text) == "hello world it s 0 in 0 naive cafe ete x y z"


def test_normalisation_keeps_words_of_other_scripts_and_drops_only_marks():
    assert normalize_text("Привет, мир! ΑΘΗΝΑ 東京") == "привет мир αθηνα 東京"
    assert normalize_text("") == ""
    assert normalize_text("!!! ... ???") == ""


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_normalisation_is_idempotent_and_clean(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "  " not in once and once == once.strip()
    assert not any(ch.isdigit() and ch != "0" for ch in once if ch.isascii())


def test_batch_shingling_agrees_with_one_text_at_a_time():
    texts = ["One two three four five six", "short", None, "Ça va? Ça va! one two three four five six"]
    together = shingle(pl.Series(texts, dtype=pl.String))
    for i, text in enumerate(texts):
        alone = shingle(pl.Series([text], dtype=pl.String))
        start, count = together.starts[i], together.counts[i]
        assert np.array_equal(together.hashes[start : start + count], alone.hashes)
        assert together.texts[i] == alone.texts[0] == normalize_text(text or "")
    assert together.counts.tolist() == [2, 0, 0, 6]
    # Same normalised words, same shingles: the last text ends with the first one.
    assert np.array_equal(together.hashes[:2], together.hashes[-2:])


# -- datasketch equivalence -------------------------------------------------------------------


def datasketch_signature(text: str, num_perm: int = 112, seed: int = 1, n: int = 5) -> np.ndarray:
    words = normalize_text(text).split()
    minhash = MinHash(num_perm=num_perm, seed=seed, scheme="affine64", hashfunc=shingle_hash)
    minhash.update_batch([tuple(words[i : i + n]) for i in range(len(words) - n + 1)])
    return minhash.digest()


@pytest.mark.parametrize("chunk", [1 << 14, 7])  # 7: one document's shingles span many blocks
def test_batch_signatures_equal_datasketch_bit_for_bit(chunk):
    rng = random.Random(0)
    vocab = ["alpha", "beta", "gamma", "délta", "42", "x", "Ünïcode", "naïve", "end."]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 60))) for _ in range(25)] + [
        "four words only here"
    ]
    signatures = Signer(num_perm=112, seed=1, chunk=chunk).sign(shingle(pl.Series(texts)))
    for text, row in zip(texts, signatures):
        assert np.array_equal(row, datasketch_signature(text)), text


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=30), st.integers(0, 2**31))
def test_signature_matches_datasketch_for_any_words_and_seed(words, seed):
    text = " ".join(words)
    row = Signer(num_perm=16, seed=seed).sign(shingle(pl.Series([text])))[0]
    assert np.array_equal(row, datasketch_signature(text, num_perm=16, seed=seed))


def test_band_hash_changes_exactly_where_a_minimum_changes():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**63, size=(2, 112), dtype=np.uint64)
    sig[1] = sig[0]
    sig[1, 3 * 8 + 5] += np.uint64(1)  # one minimum of band 3
    bands = band_hashes(sig, 14, 8)
    assert (bands[0] == bands[1]).tolist() == [b != 3 for b in range(14)]
    with pytest.raises(ValueError):
        band_hashes(sig, 10, 8)


def test_config_has_finewebs_parameters():
    config = DedupConfig()
    assert (config.n_grams, config.bands, config.rows, config.num_perm, config.scope) == (5, 14, 8, 112, "crawl")
    assert candidate_probability(0.85, 14, 8) == pytest.approx(0.988, abs=0.001)
    assert candidate_probability(0.5, 14, 8) == pytest.approx(0.053, abs=0.001)


# -- the S-curve ------------------------------------------------------------------------------


def candidate_rate(pairs: list[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(measured Jaccard, shares-a-band) per pair, through the real signature path."""
    texts = pl.Series([a for a, _, _ in pairs] + [b for _, b, _ in pairs])
    bands = band_hashes(Signer().sign(shingle(texts)), 14, 8)
    n = len(pairs)
    return np.array([j for _, _, j in pairs]), (bands[:n] == bands[n:]).any(axis=1)


def test_generated_pairs_hit_their_target_jaccard():
    for a, b, measured in jaccard_pairs(20, 0.3, 1.0, seed=5):
        sa, sb = shingle_sets([a, b])
        assert measured == jaccard(sa, sb)
    measured = np.array([j for _, _, j in jaccard_pairs(100, 0.0, 1.0, seed=6)])
    assert np.abs(measured - np.linspace(0.0, 1.0, 100)).max() < 0.02  # one shingle's worth


def test_s_curve_recall_above_085_and_false_positives_below_05():
    jaccards, hit = candidate_rate(
        jaccard_pairs(1500, 0.0, 0.5, seed=1, words=40) + jaccard_pairs(400, 0.85, 1.0, seed=2, words=40)
    )
    high, low = jaccards >= 0.85, jaccards <= 0.5
    assert high.sum() >= 300 and low.sum() >= 1450  # enough pairs on each side
    assert hit[high].mean() >= 0.98, f"recall {hit[high].mean():.3f} at Jaccard >= 0.85"
    assert hit[low].mean() <= 0.01, f"false-positive rate {hit[low].mean():.3f} at Jaccard <= 0.5"


def test_s_curve_follows_theory_around_the_threshold():
    """At the edges the rate follows 1-(1-J^8)^14: ~0.99 just above 0.85, a few % at 0.5, and
    about half at 0.7 (the threshold, (1/14)^(1/8) ~ 0.72)."""
    jaccards, hit = candidate_rate(jaccard_pairs(600, 0.45, 0.9, seed=3, words=80))
    for lo, hi in [(0.45, 0.55), (0.65, 0.75), (0.83, 0.9)]:
        inside = (jaccards >= lo) & (jaccards < hi)
        expected = candidate_probability(jaccards[inside], 14, 8).mean()
        spread = 4 * np.sqrt(expected * (1 - expected) / inside.sum()) + 0.02
        assert abs(hit[inside].mean() - expected) <= spread, (lo, hi, hit[inside].mean(), expected)


# -- union-find and the keep rule -------------------------------------------------------------


def reference_components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            low = min(label[a], label[b])
            if label[a] != low or label[b] != low:
                label[a] = label[b] = low
                changed = True
    return label


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))
    )
)
def test_union_find_labels_components_by_their_smallest_node_in_any_edge_order(case):
    n, edges = case
    expected = reference_components(n, edges)
    assert (
        union_find(
            np.array([a for a, _ in edges], dtype=np.int64), np.array([b for _, b in edges], dtype=np.int64), n
        ).tolist()
        == expected
    )
    shuffled = edges[::-1]
    assert (
        union_find(
            np.array([b for _, b in shuffled], dtype=np.int64), np.array([a for a, _ in shuffled], dtype=np.int64), n
        ).tolist()
        == expected
    )


def test_union_find_collapses_a_long_chain():
    n = 10_000
    order = np.random.default_rng(0).permutation(n - 1)
    labels = union_find(order, order + 1, n)
    assert (labels == 0).all()


def test_components_from_id_pairs():
    pairs = pl.DataFrame({"a": ["d", "b", "x"], "b": ["c", "c", "y"]})
    found = dict(components(pairs).iter_rows())
    assert found["b"] == found["c"] == found["d"] != found["x"] == found["y"]


def members(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "crawl": pl.String,
            "shard": pl.String,
            "date": pl.String,
            "from_index": pl.Boolean,
            "group": pl.Int64,
        },
        orient="row",
    )


def test_keep_rule_index_first_then_earliest_date_then_smallest_id():
    frame = members(
        [
            ("b", "c1", "s0", "2024-01-02T00:00:00Z", False, 1),
            ("a", "c1", "s1", "2024-01-02T00:00:00Z", False, 1),  # same date as b: smaller id wins
            ("c", "c1", "s0", "2024-01-03T00:00:00Z", False, 1),
            ("z", "c1", "s0", "2024-01-01T00:00:00Z", False, 2),  # earliest wins over smaller id
            ("y", "c1", "s0", "2024-01-05T00:00:00Z", False, 2),
            ("n", "c1", "s0", None, False, 2),  # a missing date sorts last
            ("q", "c0", "old", "2025-01-01T00:00:00Z", True, 3),  # the index wins whatever the date
            ("p", "c1", "s0", "2024-01-01T00:00:00Z", False, 3),
        ]
    )
    kept = {row["id"]: (row["kept_id"], row["size"]) for row in choose_kept(frame, "group").to_dicts()}
    assert kept["a"] == kept["b"] == kept["c"] == ("a", 3)
    assert kept["z"] == kept["y"] == kept["n"] == ("z", 3)
    assert kept["p"] == ("q", 2)
    # The rule depends on the rows, not their order.
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=7)
    assert choose_kept(shuffled, "group").equals(choose_kept(frame, "group"))


def test_duplicate_edges_are_stars_and_skip_index_only_groups():
    frame = pl.DataFrame(
        {
            "id": ["c", "a", "b", "i1", "i2", "solo", "i3", "n"],
            "band": [1, 1, 1, 2, 2, 3, 4, 4],
            "from_index": [False, False, False, True, True, False, True, False],
        }
    )
    edges = duplicate_edges(frame.lazy(), "band").collect().sort("a", "b")
    assert edges.select("a", "b").rows() == [("a", "b"), ("a", "c"), ("i3", "n")]


def test_size_histogram_bins():
    assert size_histogram([2, 2, 3, 5, 7, 150]) == {
        "2": 2,
        "3": 1,
        "4-5": 1,
        "6-10": 1,
        "11-20": 0,
        "21-100": 0,
        "101+": 1,
    }


def test_split_removed_keeps_order_and_columns():
    docs = pa.table({"id": ["a", "b", "c", "d"], "text": ["1", "2", "3", "4"]})
    removed = pa.table(
        {
            "id": ["c", "a"],
            "step": ["dedup_minhash", "dedup_exact"],
            "reason": ["near", "exact"],
            "cluster": [1, 2],
            "kept_id": ["b", "d"],
        }
    )
    kept, gone = split_removed(docs, removed)
    assert kept.column("id").to_pylist() == ["b", "d"]
    assert gone.to_pylist() == [
        {"id": "a", "text": "1", "step": "dedup_exact", "reason": "exact"},
        {"id": "c", "text": "3", "step": "dedup_minhash", "reason": "near"},
    ]
