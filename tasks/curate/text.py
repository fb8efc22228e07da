"""One fast tokenization of a document, shared by every filter that needs it.

datatrove spends most of its filter time in spaCy's tokenizer (about 60 docs/s here); these
regexes do the same job at thousands of docs/s. They follow spaCy's `blank("en")` where it
matters to the thresholds: numbers with separators (3.14, 1,000, 10:30) stay one token, so they
count as one non-alphabetic word; English contractions split as spaCy splits them (do + n't,
it + 's); every other punctuation mark is a token of its own.

`Text` caches words, lines and paragraphs the first time a filter asks, so the Gopher
repetition and Gopher quality filters share one tokenization; a filter that rewrites the text
(C4) makes a new `Text`.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

# Numbers with separators, words (apostrophes inside kept), single punctuation marks.
WORD_RE = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:['’]\w+)*|[^\w\s]")
# English contractions, split afterwards only in the few tokens holding an apostrophe (cheaper
# than lookaheads on every word): do|n't, it|'s, we|'re ...; O'Brien stays whole, as in spaCy.
CONTRACTION_RE = re.compile(r"(\w+?)(n['’]t)|(\w+)(['’](?:s|re|ve|ll|d|m))", re.IGNORECASE)

# A sentence ends at ., !, ? or an ellipsis (and CJK/other full stops), possibly followed by
# closing quotes or brackets, then whitespace and something more. spaCy's sentencizer splits
# on the same marks; abbreviations like "e.g." are one token there and never split.
SENTENCE_END_RE = re.compile(r"(?<!\b[A-Za-z])[.!?…。！？]+['\"”’)\]]*\s+(?=\S)")

PARAGRAPH_RE = re.compile(r"\n{2,}")
LINES_RE = re.compile(r"\n+")


def words(text: str) -> list[str]:
    tokens = WORD_RE.findall(text)
    if "'" not in text and "’" not in text:
        return tokens
    out: list[str] = []
    for token in tokens:
        if len(token) > 2 and ("'" in token or "’" in token):
            match = CONTRACTION_RE.fullmatch(token)
            if match:
                out.extend(part for part in match.groups() if part)
                continue
        out.append(token)
    return out


def count_sentences(line: str) -> int:
    """Sentences in one line of text (0 for a blank line)."""
    if not line.strip():
        return 0
    return 1 + len(SENTENCE_END_RE.findall(line.strip()))


_HAS_ALNUM = re.compile(r"[^\W_]").search


def is_punctuation(token: str) -> bool:
    """True when the token has no letter or digit (punctuation, symbols, underscores)."""
    return _HAS_ALNUM(token) is None


class Text:
    """A document's text with lazily computed, cached views."""

    __slots__ = ("text", "__dict__")

    def __init__(self, text: str):
        self.text = text

    def __len__(self) -> int:
        return len(self.text)

    @cached_property
    def words(self) -> list[str]:
        return words(self.text)

    @cached_property
    def non_symbol_words(self) -> list[str]:
        return [w for w in self.words if not is_punctuation(w)]

    @cached_property
    def word_ids(self) -> np.ndarray:
        """Each word as a small integer (equal words, equal ids), for n-gram hashing."""
        index: dict[str, int] = {}
        return np.fromiter((index.setdefault(w, len(index)) for w in self.words), dtype=np.uint64, count=len(self.words))

    @cached_property
    def word_offsets(self) -> np.ndarray:
        """Cumulative word lengths: characters of words[i:j] = offsets[j] - offsets[i]."""
        offsets = np.zeros(len(self.words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words)), out=offsets[1:])
        return offsets

    def ngram_hashes(self, n: int) -> np.ndarray:
        """A 64-bit hash per word n-gram (position i covers words[i:i+n]); collisions between
        different n-grams are about 1 in 2^64 per pair."""
        ids = self.word_ids
        count = len(ids) - n + 1
        if count <= 0:
            return np.empty(0, dtype=np.uint64)
        h = np.zeros(count, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * np.uint64(0x100000001B3) + (ids[k : k + count] + np.uint64(0x9E3779B97F4A7C15))
        return h

    @cached_property
    def lines(self) -> list[str]:
        """`str.splitlines`, as the Gopher quality and C4 rules use."""
        return self.text.splitlines()

    @cached_property
    def nonempty_lines(self) -> list[str]:
        """Lines split on \\n only, blank ones left out (the FineWeb quality rules)."""
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return PARAGRAPH_RE.split(self.text.strip())

    @cached_property
    def newline_runs(self) -> list[str]:
        """Lines split on runs of newlines (the Gopher repetition line rules)."""
        return LINES_RE.split(self.text)
