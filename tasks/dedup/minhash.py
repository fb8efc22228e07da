"""MinHash signatures for many documents at once: normalise, shingle, hash, permute, band.

FineWeb's recipe (datatrove's MinhashConfig as the FineWeb example sets it): text normalised
(lowercase, digits folded, punctuation and accents stripped, whitespace collapsed), word
5-grams, 64-bit hashes, 14 bands of 8 minima (112 permutations). The MinHash itself is
datasketch's `affine64` scheme: each shingle hash is pre-mixed with the 64-bit MurmurHash3
finaliser, then permuted by `a·h + b mod 2^64` with datasketch's own `(a, b)` for the seed,
and the minimum per permutation is kept. `tests/test_dedup_minhash.py` checks bit for bit
that `datasketch.MinHash(hashfunc=shingle_hash, scheme="affine64").update_batch(...)` gives
the same signature as `Signer.sign`.

What is ours is the batching: a shard is processed a batch of documents at a time, with the
text work in polars (vectorised, no Python loop per word), one datasketch `sha1_hash64` per
*distinct* word in the batch, and the shingle hashes and permutations as numpy array
operations over every shingle of the batch. That is what makes the signature stage
~tens of times faster than a per-document loop (see benchmarks/dedup.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.compute as pc
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash64

# The 64-bit MurmurHash3 finaliser (an avalanching bijection on uint64) and the odd
# multiplier used to chain word hashes into shingle hashes and minima into band hashes.
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_CHAIN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
_SHINGLE_SEED = 0x5348494E474C4531  # "SHINGLE1": the chain's start value for shingles
_BAND_SEED = 0x42414E4453303031  # "BANDS001": the chain's start value for bands (+ band index)

# Digits runs (with one decimal part) fold to "0", as datatrove's number normalisation does;
# then every punctuation, symbol, control or separator character becomes a word boundary.
_NUMBER = r"\p{Nd}+(?:[.,،٫⎖⎗⎘]\p{Nd}+)?"
_NOT_WORD = r"[\p{P}\p{S}\p{C}\p{Z}]"
_NON_ASCII = r"[^\x00-\x7F]"


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 arithmetic wraps mod 2^64)."""
    x = x ^ (x >> _S33)
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def chain(start: np.ndarray | int, columns: list[np.ndarray]) -> np.ndarray:
    """An order-sensitive 64-bit hash of equal-length uint64 columns, row by row.

    Each step `h = fmix64((h ^ c) * K)` is a bijection in `c` for a fixed `h`, so rows that
    differ anywhere hash apart (up to 64-bit collisions).
    """
    h = np.full(len(columns[0]), start, dtype=np.uint64) if np.isscalar(start) else start.copy()
    for column in columns:
        h ^= column
        h *= _CHAIN
        h = fmix64(h)
    return h


# -- text ---------------------------------------------------------------------------------


def normalized_words(text: pl.Expr) -> pl.Expr:
    """The list of normalised words of each text (datatrove's `simplify_text`, then split).

    Lowercase; accents stripped (NFD, then combining marks dropped; NFD only runs on texts
    that are not plain ASCII, which is most of the cost saved); digit runs folded to "0";
    punctuation, symbols, controls and separators become spaces; then split on spaces.
    """
    lowered = text.str.to_lowercase()
    unaccented = (
        pl.when(lowered.str.contains(_NON_ASCII))
        .then(lowered.str.normalize("NFD").str.replace_all(r"\p{Mn}", ""))
        .otherwise(lowered)
    )
    spaced = unaccented.str.replace_all(_NUMBER, "0").str.replace_all(_NOT_WORD, " ")
    return spaced.str.split(" ").list.filter(pl.element() != "")


def normalize_text(text: str) -> str:
    """One text normalised: the words of `normalized_words` joined by single spaces."""
    words = pl.select(normalized_words(pl.lit(text, dtype=pl.String))).item()
    return " ".join(words)


def word_hash(word: str) -> int:
    """A word's 64-bit hash: datasketch's `sha1_hash64` (SHA-1, first 8 bytes, LE)."""
    return sha1_hash64(word.encode("utf-8"))


def shingle_hash(words: tuple[str, ...] | list[str]) -> int:
    """The 64-bit hash of one shingle (a tuple of words): the chain of its word hashes.

    This is the `hashfunc` that makes plain datasketch agree with `Signer.sign`; the batch
    path computes exactly this, vectorised.
    """
    columns = [np.array([word_hash(w)], dtype=np.uint64) for w in words]
    return int(chain(_SHINGLE_SEED, columns)[0])


@dataclass
class Shingled:
    """The shingles of a batch of documents, flattened: document `i` owns
    `hashes[starts[i]:starts[i] + counts[i]]`."""

    hashes: np.ndarray  # uint64
    counts: np.ndarray  # int64, shingles per document (0 when it has fewer than n words)
    words: np.ndarray  # int64, normalised words per document
    texts: list[str]  # normalised texts, for the exact-duplicate hash

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)


def shingle(texts: pl.Series, n: int = 5) -> Shingled:
    """Normalise a batch of texts and hash every word n-gram of every one of them."""
    frame = pl.DataFrame({"text": texts.fill_null("")}).select(normalized_words(pl.col("text")).alias("w"))
    words_per_doc = frame["w"].list.len().to_numpy().astype(np.int64)
    texts_out = frame.select(pl.col("w").list.join(" "))["w"].to_list()
    # Each distinct word of the batch is hashed once (Arrow's dictionary encoding finds them).
    encoded = pc.dictionary_encode(frame["w"].explode().drop_nulls().to_arrow())
    distinct = encoded.dictionary.to_pylist()
    hashes = np.fromiter((word_hash(w) for w in distinct), dtype=np.uint64, count=len(distinct))
    tokens = hashes[encoded.indices.to_numpy(zero_copy_only=False)]

    # Shingle j of the flat token stream covers tokens j..j+n-1; keep those inside one document.
    total = len(tokens)
    if total < n:
        counts = np.zeros(len(words_per_doc), dtype=np.int64)
        return Shingled(np.zeros(0, dtype=np.uint64), counts, words_per_doc, texts_out)
    width = total - n + 1
    combined = chain(_SHINGLE_SEED, [tokens[j : j + width] for j in range(n)])
    doc_end = np.cumsum(words_per_doc)
    doc_start = doc_end - words_per_doc
    counts = np.maximum(words_per_doc - n + 1, 0)
    owner = np.repeat(np.arange(len(words_per_doc)), counts)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return Shingled(combined[doc_start[owner] + offset], counts, words_per_doc, texts_out)


def exact_hash(normalized: str) -> bytes:
    """128 bits of BLAKE2b over the normalised text: the exact-duplicate key.

    128 rather than 64 bits because a collision here silently drops a document, and at a
    billion documents a 64-bit key collides with a few percent probability.
    """
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


# -- MinHash ------------------------------------------------------------------------------


class Signer:
    """datasketch's `affine64` MinHash over shingle hashes, for a whole batch at once."""

    def __init__(self, num_perm: int = 112, seed: int = 1, chunk: int = 1 << 14):
        proto = MinHash(num_perm=num_perm, seed=seed, scheme="affine64")
        a, b = proto.permutations
        self.a = np.asarray(a, dtype=np.uint64)
        self.b = np.asarray(b, dtype=np.uint64)
        self.empty = proto.hashvalues[0]  # datasketch's "no shingle" value (2^64 - 1)
        self.num_perm = num_perm
        self.chunk = chunk  # shingles per matrix block: bounds memory at chunk x num_perm x 8 B

    def sign(self, shingled: Shingled) -> np.ndarray:
        """A (documents x num_perm) uint64 matrix of minima; rows of documents without a
        shingle hold datasketch's empty value."""
        counts = shingled.counts
        # Permutation-major (num_perm x shingles) blocks: each row is one contiguous
        # multiply-add-min pass, about 3x faster than shingle-major here.
        out = np.full((self.num_perm, len(counts)), self.empty, dtype=np.uint64)
        mixed = fmix64(shingled.hashes)
        owner = np.repeat(np.arange(len(counts)), counts)
        a, b = self.a[:, None], self.b[:, None]
        block = np.empty((self.num_perm, min(self.chunk, len(mixed))), dtype=np.uint64)
        for lo in range(0, len(mixed), self.chunk):
            values = mixed[lo : lo + self.chunk]
            view = block[:, : len(values)]
            np.multiply(a, values[None, :], out=view)  # wraps mod 2^64, as datasketch's does
            np.add(view, b, out=view)
            docs = owner[lo : lo + self.chunk]
            # Minimum per (permutation, document) over this block, folded into out.
            firsts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            minima = np.minimum.reduceat(view, firsts, axis=1)
            rows = docs[firsts]
            out[:, rows] = np.minimum(out[:, rows], minima)
        return np.ascontiguousarray(out.T)


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per band of `rows` consecutive minima: (documents x bands) uint64.
    Two documents share a band hash exactly when (up to 2^-64) all its minima are equal."""
    if signatures.shape[1] != bands * rows:
        raise ValueError(f"a signature of {signatures.shape[1]} minima is not {bands} bands x {rows} rows")
    out = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        columns = [signatures[:, band * rows + r] for r in range(rows)]
        out[:, band] = chain(_BAND_SEED + band, columns)
    return out


def candidate_probability(jaccard: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The LSH S-curve: the chance that two documents of this Jaccard similarity share a band."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** rows) ** bands
