"""One tokenization of a document, shared by every filter that needs it.

Words are cut as datatrove's spaCy `blank("en")` cuts them (tasks/curate/tokenizer.py: its
algorithm and English rules, at thousands of documents a second instead of about 60). `Text`
caches words, lines and paragraphs the first time a filter asks, so the Gopher repetition and
Gopher quality filters share one tokenization; a filter that rewrites the text (C4) makes a new
`Text`.
"""

from __future__ import annotations

import functools
import re
from functools import cached_property

import numpy as np

from tasks.curate.tokenizer import words

__all__ = ["Text", "count_sentences", "words", "is_symbol_word"]

# A sentence ends at ., !, ? or an ellipsis (and CJK/other full stops), possibly followed by
# closing quotes or brackets, then whitespace and something more, or glued to the next
# sentence's capital ("physician.Police", which spaCy splits too). A single letter before the
# dot (initials, "e.g.") does not end a sentence.
SENTENCE_END_RE = re.compile(r"(?<!\b[A-Za-z])[.!?…。！？]+['\"”’)\]]*\s+(?=\S)|(?<=[a-z])[.!?]+(?=[A-Z])")
PARAGRAPH_RE = re.compile(r"\n{2,}")


def count_sentences(line: str) -> int:
    """Sentences in one line of text (0 for a blank line)."""
    if not line.strip():
        return 0
    return 1 + len(SENTENCE_END_RE.findall(line.strip()))


@functools.cache
def sentence_terminals() -> tuple[str, ...]:
    """Unicode's Sentence_Terminal characters: the multilingual set datatrove HEAD uses
    (its list matches this property up to a few recent additions; no quote marks)."""
    import regex

    pattern = regex.compile(r"\p{Sentence_Terminal}")
    return tuple(chr(c) for c in range(0x20000) if pattern.match(chr(c)))  # none lie past plane 1


# datatrove's punctuation: a token made only of these is not a word for Gopher's length rules
# (other symbols, like § or •, are): ASCII punctuation, typographic quotes and dashes, CJK and
# full-width marks, control characters, every sentence terminal (and, as datatrove has it, the
# full-width digit one, but not the opening single quote).
PUNCTUATION = frozenset(
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    "—–”“’„«»´…►━∶"
    "、。，；：？！（）【】《》〈〉「」％１～．" + "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
) | frozenset(sentence_terminals())
_NOT_PUNCTUATION = re.compile("[^" + re.escape("".join(sorted(PUNCTUATION))) + "]").search


def is_symbol_word(token: str) -> bool:
    return _NOT_PUNCTUATION(token) is None


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
    def word_count(self) -> int:
        """len(words); a filter that rewrites the text may preset it (see C4QualityFilter)."""
        return len(self.words)

    @cached_property
    def non_symbol_words(self) -> list[str]:
        return list(filter(_NOT_PUNCTUATION, self.words))  # tokens that are not all punctuation

    @cached_property
    def word_ids(self) -> np.ndarray:
        """Each word as a 64-bit number, equal words equal numbers: Python's own string hash
        (salted per process, which is fine: it is only compared within one document)."""
        return np.fromiter(map(hash, self.words), dtype=np.int64, count=len(self.words)).view(np.uint64)

    @cached_property
    def word_offsets(self) -> np.ndarray:
        """Cumulative word lengths: characters of words[i:j] = offsets[j] - offsets[i]."""
        offsets = np.zeros(len(self.words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words)), out=offsets[1:])
        return offsets

    def ngram_hashes(self, n: int) -> np.ndarray:
        """A 64-bit hash per word n-gram (position i covers words[i:i+n]); collisions between
        different n-grams are about 1 in 2^64 per pair. Built from the (n-1)-gram hashes when
        those exist, so all n from 2 to 10 cost one pass each."""
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_ngram_hashes", {})
        if n in cache:
            return cache[n]
        ids = self.word_ids
        count = len(ids) - n + 1
        if count <= 0:
            h = np.empty(0, dtype=np.uint64)
        else:
            with np.errstate(over="ignore"):
                if n == 1:
                    h = ids + np.uint64(0x9E3779B97F4A7C15)
                else:
                    h = self.ngram_hashes(n - 1)[:count] * np.uint64(0x100000001B3) + (
                        ids[n - 1 : n - 1 + count] + np.uint64(0x9E3779B97F4A7C15)
                    )
        cache[n] = h
        return h

    def repeated_ngrams(self, n: int) -> np.ndarray:
        """Positions (ascending) whose n-gram occurs more than once in the document. An n-gram
        can repeat only where its first n-1 words do, so for n > 2 only the positions repeated
        at n-1 are looked at: one sort of every bigram, then ever smaller ones."""
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_repeated_ngrams", {})
        if n in cache:
            return cache[n]
        hashes = self.ngram_hashes(n)
        if n > 2:
            candidates = self.repeated_ngrams(n - 1)
            candidates = candidates[candidates < len(hashes)]
        else:
            candidates = np.arange(len(hashes))
        sub = hashes[candidates]
        order = np.argsort(sub)
        ordered = sub[order]
        same_as_next = ordered[1:] == ordered[:-1]
        repeated = np.zeros(len(sub), dtype=bool)  # in sorted order: equal to a neighbour
        repeated[1:] = same_as_next
        repeated[:-1] |= same_as_next
        keep = np.empty(len(sub), dtype=bool)
        keep[order] = repeated
        cache[n] = candidates[keep]
        return cache[n]

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
        """Lines split on runs of newlines (the Gopher repetition line rules): `re.split("\\n+")`,
        built from `str.split` (six times faster): the empty pieces between newlines go, the
        ones at the two ends stay, as the regex leaves them."""
        parts = self.text.split("\n")
        if len(parts) > 2 and "" in parts[1:-1]:
            parts = [parts[0], *filter(None, parts[1:-1]), parts[-1]]
        return parts
