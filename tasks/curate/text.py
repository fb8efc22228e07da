"""One fast tokenization of a document, shared by every filter that needs it.

datatrove spends most of its filter time in spaCy's tokenizer (about 60 docs/s here); these
regexes do the same job at thousands of docs/s. They follow spaCy's `blank("en")` where it
matters to the thresholds (the share of words with a letter, word counts, mean word length):
URLs, emails, initialisms, abbreviations and numbers with separators stay one token; English
contractions split as spaCy splits them (do + n't, it + 's); every other punctuation mark is a
token of its own.

`Text` caches words, lines and paragraphs the first time a filter asks, so the Gopher
repetition and Gopher quality filters share one tokenization; a filter that rewrites the text
(C4) makes a new `Text`.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

# What spaCy keeps whole, and we too: URLs and emails, initialisms (U.S., e.g.) and common
# abbreviations (Inc., Gov., Jan.), numbers with separators (3.14, 1,000, 11/19/19), ellipses;
# then words (apostrophes inside kept) and single punctuation marks. English contractions are
# split as spaCy splits them (do|n't, it|'s) by a space put before them first. URLs and emails
# are cut out first, only in texts that have them. Every step is one C-level regex pass: no
# Python loop per token.
ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|Prof|Gov|Sen|Rep|Gen|Col|Lt|Sgt|Capt|Rev|Hon|Corp|Inc|Ltd|Co|Jr|Sr|St|vs|etc|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mt|Ft|Ave|Blvd|Dept|Univ|approx|No|Nos|Vol|Fig"
)
URL_OR_EMAIL_RE = re.compile(
    r"((?<![\w/])(?:https?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]'’]|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
)


def _word_chars() -> str:
    """A character class body: \w plus combining marks (Devanagari vowel signs, accents
    written apart), which Python's \w leaves out, plus CJK and full-width punctuation, which
    spaCy's English rules keep inside the surrounding run (a Japanese sentence is one token
    there, so here too)."""
    import unicodedata

    # Basic Multilingual Plane only: a class of BMP ranges compiles to a bitmap (one lookup per
    # character); ranges past it make the regex engine scan a range list for every character.
    marks = [c for c in range(0x10000) if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")]
    ranges, first = [], marks[0]
    for a, b in zip(marks, marks[1:] + [-1]):
        if b != a + 1:  # a run of consecutive code points ends at a
            ranges.append(f"\\u{first:04x}-\\u{a:04x}")
            first = b
    return r"\w" + "".join(ranges) + r"\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"


W = _word_chars()
WORD_RE = re.compile(
    # Most tokens are plain words followed by a space or a comma: matched first, they skip the
    # alternatives below (a quarter of this regex's time). A run of ASCII letters not followed by
    # a word character, a dot or an apostrophe is what the word alternative would match anyway.
    rf"[A-Za-z][a-z]*+(?![{W}.'’])"
    r"|[^\W\d_](?:\.[A-Za-z])*\.(?![^\W\d_])"  # initials and initialisms: A., U.S., e.g.
    rf"|(?=[A-Za-z]{{1,6}}\.)(?:{ABBREVIATIONS})\.(?!\w)"  # the guard keeps the alternation off most words
    r"|\d+(?:[.,:/]\d+)*"
    r"|['’](?:s|re|ve|ll|d|m)\b"
    rf"|@[{W}]+"
    rf"|[{W}]+(?:['’][{W}]+)*"
    r"|\.{2,}"
    r"|[^\w\s]"
)
# The n of n't or the apostrophe of 's, 're, ... after a word character; a space goes before it.
# Written to start with those characters (the lookbehinds after them), so the regex engine
# jumps from candidate to candidate instead of trying every position.
CONTRACTION_RE = re.compile(r"n(?<=\wn)(?=['’]t\b)|['’](?<=\w['’])(?=(?:s|re|ve|ll|d|m)\b)", re.IGNORECASE)


# A sentence ends at ., !, ? or an ellipsis (and CJK/other full stops), possibly followed by
# closing quotes or brackets, then whitespace and something more, or glued to the next
# sentence's capital ("physician.Police", which spaCy splits too). A single letter before the
# dot (initials, "e.g.") does not end a sentence.
SENTENCE_END_RE = re.compile(r"(?<!\b[A-Za-z])[.!?…。！？]+['\"”’)\]]*\s+(?=\S)|(?<=[a-z])[.!?]+(?=[A-Z])")
PARAGRAPH_RE = re.compile(r"\n{2,}")


def words(text: str) -> list[str]:
    if "'" in text or "’" in text:
        text = CONTRACTION_RE.sub(r" \g<0>", text)
    if "@" in text or "://" in text or "www." in text:
        out: list[str] = []
        for i, part in enumerate(URL_OR_EMAIL_RE.split(text)):
            if i % 2:
                out.append(part)
            elif part:
                out.extend(WORD_RE.findall(part))
        return out
    return WORD_RE.findall(text)


def count_sentences(line: str) -> int:
    """Sentences in one line of text (0 for a blank line)."""
    if not line.strip():
        return 0
    return 1 + len(SENTENCE_END_RE.findall(line.strip()))


# A token with a letter or digit is a word for Gopher's length rules; one without is punctuation.
_HAS_ALNUM = re.compile(r"[^\W_]").search


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
        return list(filter(_HAS_ALNUM, self.words))  # words with a letter or digit

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
                    h = self.ngram_hashes(n - 1)[:count] * np.uint64(0x100000001B3) + (ids[n - 1 : n - 1 + count] + np.uint64(0x9E3779B97F4A7C15))
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
