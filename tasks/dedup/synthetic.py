"""Generated documents for measuring dedup: pairs at a controlled Jaccard similarity, and
corpora of realistic length with planted duplicates, streamed as the filtered dataset's rows.

The Jaccard similarity of a pair is always *measured*, never assumed: `shingle_sets` is a
plain-Python reference (normalised words, n-gram tuples) independent of the hashing path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.curate.stage import CLEAN_SCHEMA as FILTERED_SCHEMA  # the filtered dataset has clean's columns
from tasks.dedup.minhash import normalized_words

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def shingle_sets(texts: list[str], n: int = 5) -> list[set[tuple[str, ...]]]:
    """Each text's set of normalised word n-grams, as plain tuples (the reference)."""
    lists = (
        pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(normalized_words(pl.col("t"))).to_series().to_list()
    )
    return [{tuple(words[i : i + n]) for i in range(len(words) - n + 1)} for words in lists]


def jaccard(a: set, b: set) -> float:
    """The exact Jaccard similarity of two shingle sets."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def random_words(rng: np.random.Generator, count: int, length: int = 8) -> list[str]:
    """`count` random lowercase words (26^8 of them: distinct in practice)."""
    letters = LETTERS[rng.integers(0, 26, size=(count, length))]
    return [bytes(row).decode() for row in letters]


def pair_at(rng: np.random.Generator, target: float, words: int = 60, n: int = 5) -> tuple[str, str]:
    """Two texts of `words` distinct words whose n-gram sets have Jaccard close to `target`.

    B shares `s` of A's S shingles and has S - s new ones, so J = s / (2S - s). Half the
    pairs share a prefix and differ in their tail; half differ at scattered words, each
    changed word breaking the n shingles that cover it (in slots that do not overlap), plus
    the last few words (changing the last r words breaks exactly r shingles). Every word is
    fresh, so pairs never resemble each other.
    """
    a = random_words(rng, words)
    shingles = words - n + 1
    shared = int(round(2 * target * shingles / (1 + target)))
    broken = shingles - shared
    if rng.random() < 0.5:
        keep = shared + n - 1 if shared > 0 else 0
        return " ".join(a), " ".join(a[:keep] + random_words(rng, words - keep))
    b = list(a)
    tail = broken % n
    for i in range(words - tail, words):
        b[i] = random_words(rng, 1)[0]
    slots = (shingles - tail) // n  # word n-1+k*n breaks shingles k*n .. k*n+n-1
    for k in rng.choice(slots, size=broken // n, replace=False):
        b[n - 1 + k * n] = random_words(rng, 1)[0]
    return " ".join(a), " ".join(b)


def jaccard_pairs(count: int, low: float, high: float, seed: int = 0, words: int = 60) -> list[tuple[str, str, float]]:
    """`count` pairs with targets spread evenly over [low, high], each with its measured Jaccard."""
    rng = np.random.default_rng(seed)
    texts = [pair_at(rng, float(target), words) for target in np.linspace(low, high, count)]
    sets = shingle_sets([t for pair in texts for t in pair])
    return [(a, b, jaccard(sets[2 * i], sets[2 * i + 1])) for i, (a, b) in enumerate(texts)]


def vocabulary(size: int = 50_000, seed: int = 0) -> np.ndarray:
    """Words of 2-10 letters; `documents` draws them with Zipf-like frequencies."""
    rng = np.random.default_rng(seed)
    return np.array([bytes(LETTERS[rng.integers(0, 26, n)]).decode() for n in rng.integers(2, 11, size)], dtype=object)


def documents(
    count: int,
    crawl: str = "synthetic",
    seed: int = 0,
    words: tuple[int, int] = (500, 1000),
    near_duplicates: float = 0.05,
    exact_duplicates: float = 0.02,
    batch_size: int = 2048,
    id_prefix: str = "",
) -> Iterator[pa.RecordBatch]:
    """`count` filtered-dataset rows of realistic length, in record batches.

    A fraction are near-duplicates of an earlier document (1% of its words changed, so
    Jaccard ~0.9) and a fraction exact duplicates up to case and
    punctuation; the rest are fresh Zipf-distributed text. Deterministic in `seed`.
    """
    rng = np.random.default_rng(seed)
    vocab = vocabulary(seed=seed)
    ranks = np.arange(1, len(vocab) + 1)
    weights = 1.0 / ranks**1.1
    cumulative = np.cumsum(weights / weights.sum())
    recent: list[np.ndarray] = []
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for lo in range(0, count, batch_size):
        rows: dict[str, list] = {name: [] for name in FILTERED_SCHEMA.names}
        for i in range(lo, min(lo + batch_size, count)):
            roll = rng.random()
            kind = (
                "near" if roll < near_duplicates else "exact" if roll < near_duplicates + exact_duplicates else "fresh"
            )
            if kind == "fresh" or not recent:
                kind, tokens = "fresh", np.searchsorted(cumulative, rng.random(int(rng.integers(*words))))
            else:
                tokens = recent[int(rng.integers(len(recent)))].copy()
            if kind == "near":  # ~1% of the words changed: Jaccard of 5-gram sets ~0.9
                edits = rng.choice(len(tokens), size=max(1, len(tokens) // 100), replace=False)
                tokens[edits] = np.searchsorted(cumulative, rng.random(len(edits)))
            text = " ".join(vocab[np.minimum(tokens, len(vocab) - 1)])
            text = text.upper() + "!" if kind == "exact" else text.capitalize() + "."  # same normalised text
            if len(recent) < 256:
                recent.append(tokens)
            else:
                recent[int(rng.integers(256))] = tokens
            rows["id"].append(f"<urn:uuid:{id_prefix}{seed:04d}-{i:012d}>")
            rows["url"].append(f"https://example.com/{crawl}/{i}")
            rows["date"].append(
                (start + dt.timedelta(seconds=int(rng.integers(0, 10**7)))).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            rows["crawl"].append(crawl)
            rows["warc"].append(f"{crawl}.warc.gz")
            rows["text"].append(text)
            rows["language"].append("en")
            rows["language_score"].append(0.9)
            rows["quality_score"].append(None)  # not scored (the quality step is off)
        yield pa.RecordBatch.from_pydict(rows, schema=FILTERED_SCHEMA)
