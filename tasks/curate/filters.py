"""The text filters: Gopher repetition, Gopher quality, C4, FineWeb quality, and custom ones.

Each filter is a small callable: a `Doc` in, None to keep it or the reason to drop it out,
thresholds from its config (FineWeb's defaults). Reasons use datatrove's names, so the two can
be compared rule by rule. Where the FineWeb-era code and datatrove HEAD differ we follow HEAD
(the anchor the benchmark measures against; its changes fix counting bugs) unless a config
field says otherwise: see each rule and docs/curate.md.

Filters share one tokenization through `Doc.view` (a `text.Text`); C4 rewrites the text by
dropping lines, which gives the later filters a new view.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.curate.config import (
    C4Config,
    CustomFilter,
    FineWebQualityConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
)
from tasks.curate.text import Text, count_sentences, sentence_terminals
from tasks.curate.text import words as tokenize
from tasks.curate.tokenizer import ALPHA

HAS_LETTER = re.compile(f"[{ALPHA}]").search  # str.isalpha, as datatrove tests it (Basic Multilingual Plane)


@dataclass
class Doc:
    """A document between steps: its text (with cached tokenization) and metadata."""

    id: str
    url: str
    view: Text
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.view.text

    def rewrite(self, text: str) -> None:
        if text != self.view.text:
            self.view = Text(text)


# -- shared counting ---------------------------------------------------------------------


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in them), counting every repeat after the first."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def top_ngram_chars(view: Text, n: int) -> int:
    """Characters x count of the most frequent word n-gram (words joined by spaces); on a tie
    of counts the n-gram seen first wins, as with `Counter.most_common`."""
    hashes = view.ngram_hashes(n)
    if not len(hashes):
        return 0
    repeated = view.repeated_ngrams(n)
    i, best = 0, 1  # nothing repeats: every n-gram occurs once and the first one wins
    if len(repeated):
        _, first, counts = np.unique(hashes[repeated], return_index=True, return_counts=True)
        best = int(counts.max())
        i = int(repeated[first[counts == best].min()])
    offsets = view.word_offsets
    return int(offsets[i + n] - offsets[i] + n - 1) * best


def duplicated_ngram_chars(view: Text, n: int) -> int:
    """Characters in repeated n-grams, scanning greedily: after a repeat, skip its n words
    (so overlapping repeats are not counted twice). Characters are the words' own (no spaces).

    Only positions whose n-gram occurs more than once can change the count, so the scan walks
    those alone (usually a handful) instead of every position."""
    repeated = view.repeated_ngrams(n)
    if not len(repeated):
        return 0
    offsets = view.word_offsets
    seen: set[int] = set()
    chars = skip_until = 0
    for pos, gram in zip(repeated.tolist(), view.ngram_hashes(n)[repeated].tolist()):
        if pos < skip_until:
            continue
        if gram in seen:
            chars += int(offsets[pos + n] - offsets[pos])
            skip_until = pos + n
        else:
            seen.add(gram)
    return chars


# -- filters -------------------------------------------------------------------------------


class GopherRepetitionFilter:
    """MassiveText (Gopher) repetition rules; drop when any fraction is > its threshold."""

    step = "gopher_repetition"

    def __init__(self, config: GopherRepetitionConfig):
        self.c = config

    def __call__(self, doc: Doc) -> str | None:
        c, view = self.c, doc.view
        size = len(view.text)
        if not size:
            return "empty"
        paragraphs = view.paragraphs
        count, chars = duplicates(paragraphs)
        if count / len(paragraphs) > c.dup_para_frac:
            return "dup_para_frac"
        if chars / size > c.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = view.newline_runs
        count, chars = duplicates(lines)
        if count / len(lines) > c.dup_line_frac:
            return "dup_line_frac"
        if chars / size > c.dup_line_char_frac:
            return "dup_line_char_frac"
        for n, limit in sorted(c.top_n_grams.items()):
            if top_ngram_chars(view, n) / size > limit:
                return f"top_{n}_gram"
        for n, limit in sorted(c.dup_n_grams.items()):
            chars = duplicated_ngram_chars(view, n)
            if chars / size > limit:
                return f"duplicated_{n}_n_grams"
            if not chars:
                break  # no repeated n-gram, so no repeated longer one either
        return None


class GopherQualityFilter:
    """Gopher quality rules. Words that are all punctuation do not count as words for the
    length rules. Stop words: datatrove HEAD counts distinct ones (the FineWeb-era code
    counted occurrences; `stop_words_distinct: false`), case-sensitively, as both do."""

    step = "gopher_quality"

    def __init__(self, config: GopherQualityConfig):
        self.c = config
        self.stop_words = frozenset(config.stop_words)

    def __call__(self, doc: Doc) -> str | None:
        c, view, text = self.c, doc.view, doc.text
        words = view.words
        real = view.non_symbol_words
        if len(real) < c.min_doc_words or not words:
            return "gopher_short_doc"
        if len(real) > c.max_doc_words:
            return "gopher_long_doc"
        mean = sum(map(len, real)) / len(real) if real else 0.0
        if mean < c.min_avg_word_length:
            return "gopher_below_avg_threshold"
        if mean > c.max_avg_word_length:
            return "gopher_above_avg_threshold"
        n = len(words)
        if text.count("#") / n > c.max_symbol_word_ratio:
            return "gopher_too_many_hashes"
        if (text.count("...") + text.count("…")) / n > c.max_symbol_word_ratio:
            return "gopher_too_many_ellipsis"
        lines = view.lines or [""]
        bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
        if bullets / len(lines) > c.max_bullet_lines_ratio:
            return "gopher_too_many_bullets"
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
        if ellipsis / len(lines) > c.max_ellipsis_lines_ratio:
            return "gopher_too_many_end_ellipsis"
        alpha = len(list(filter(HAS_LETTER, words)))  # C-level loop: a third of the time of a genexpr
        if alpha / n < c.min_alpha_words_ratio:
            return "gopher_below_alpha_threshold"
        if c.stop_words_distinct:
            stops = len(self.stop_words.intersection(words))
        else:
            stops = sum(1 for w in words if w in self.stop_words)
        if stops < c.min_stop_words:
            return "gopher_enough_stop_words"
        return None


class C4QualityFilter:
    """C4's line rules without terminal punctuation (as FineWeb). Rewrites the text to the
    kept lines; drops the document for lorem ipsum, a curly bracket, or < 5 sentences."""

    step = "c4"

    def __init__(self, config: C4Config):
        self.c = config
        self.citation = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
        self.policy = re.compile("terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies")

    def _lines(self, lines: list[str], on_cited) -> Iterator[tuple[str, str]]:
        """(verdict, line) for each line: "keep", "drop", or the reason of a document rule the
        line breaks ("lorem_ipsum", "curly_bracket"). `on_cited(before, after)` hears of every
        line whose citations were cut."""
        c = self.c
        for raw in lines:
            line = raw.strip()
            words = line.split()
            if 0 <= c.max_word_length < len(line) and max(map(len, words)) > c.max_word_length:
                yield "drop", line
                continue
            if c.remove_citations and "[" in line:
                cited, line = line, self.citation.sub("", line)
                if cited != line:
                    on_cited(cited, line)
            if c.filter_no_terminal_punct and (not line.endswith((".", "?", "!", '"', "'")) or line.endswith("...")):
                yield "drop", line
                continue
            if len(words) < c.min_words_per_line:
                yield "drop", line
                continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                yield "lorem_ipsum", line
            elif c.filter_javascript and "javascript" in lower:
                yield "drop", line
            elif c.filter_curly_bracket and "{" in line:
                yield "curly_bracket", line
            elif c.filter_policy and self.policy.search(lower):
                yield "drop", line
            else:
                yield "keep", line

    def kept_lines(self, text: str) -> str:
        """The line rules alone: what C4 keeps of `text`, with no document decision (for a text
        whose document was judged on another extraction of the same page). A line that breaks a
        document rule is dropped: the judged text had none, or C4 would have dropped the page."""
        lines = self._lines(Text(text).lines, lambda before, after: None)
        return "\n".join(line for verdict, line in lines if verdict == "keep").strip()

    def __call__(self, doc: Doc) -> str | None:
        c = self.c
        kept: list[str] = []
        sentences = 0
        # Tokens never span lines, so when the words are already known the rewritten text's
        # word count is the old one minus the dropped lines' and the citations' tokens: the
        # FineWeb filter after us then needs no second tokenization. The dropped lines are
        # tokenized together at the end (one regex call, not one per line).
        known = "words" in doc.view.__dict__
        removed_words = 0
        dropped_lines: list[str] = []
        counting = c.min_num_sentences >= 0

        def on_cited(before: str, after: str) -> None:
            nonlocal removed_words
            if known:
                removed_words += len(tokenize(before)) - len(tokenize(after))

        for verdict, line in self._lines(doc.view.lines, on_cited):
            if verdict not in ("keep", "drop"):
                return verdict
            if verdict == "drop":
                dropped_lines.append(line)
                continue
            if counting:
                sentences += count_sentences(line)
                counting = sentences < c.min_num_sentences  # only the threshold matters
            kept.append(line)
        if sentences < c.min_num_sentences:
            return "too_few_sentences"
        if known and dropped_lines:
            removed_words += len(tokenize("\n".join(dropped_lines)))
        word_count = doc.view.word_count - removed_words if known else None
        doc.rewrite("\n".join(kept).strip())
        if word_count is not None:
            doc.view.__dict__.setdefault("word_count", word_count)
        return None


class FineWebQualityFilter:
    """FineWeb's own rules. Lines are split on \\n and blank ones left out (HEAD; the FineWeb-era
    code counted blank lines), lines ending in a sentence terminal must be >= line_punct_thr,
    short lines <= short_line_thr, duplicated-line chars <= char_duplicates_ratio, newlines per
    word <= new_line_ratio."""

    step = "fineweb_quality"

    def __init__(self, config: FineWebQualityConfig, terminals: tuple[str, ...] | None = None):
        self.c = config
        self.terminals = terminals or sentence_terminals()

    def __call__(self, doc: Doc) -> str | None:
        c, view, text = self.c, doc.view, doc.text
        lines = view.nonempty_lines
        if not lines:
            return "empty"
        if sum(1 for line in lines if line.endswith(self.terminals)) / len(lines) < c.line_punct_thr:
            return "line_punct_ratio"
        if sum(1 for line in lines if len(line) <= c.short_line_length) / len(lines) > c.short_line_thr:
            return "short_line_ratio"
        chars = len(text) - text.count("\n")
        if chars and duplicates(lines)[1] / chars > c.char_duplicates_ratio:
            return "char_dup_ratio"
        count = view.word_count
        if not count or text.count("\n") / count > c.new_line_ratio:
            return "list_ratio"
        return None


# -- custom filters --------------------------------------------------------------------------


class CustomFilterStep:
    """A user's filter, loaded by import path: a class (instantiated with the options) or a
    function; either is called with the `Doc` and returns None to keep or a reason to drop."""

    step = "custom"

    def __init__(self, spec: CustomFilter):
        module, _, name = spec.path.partition(":")
        if not name:
            module, _, name = spec.path.rpartition(".")
        target = getattr(importlib.import_module(module), name)
        self.name = name
        self.fn: Callable[[Doc], str | None | bool] = (
            target(**spec.options)
            if isinstance(target, type)
            else functools.partial(target, **spec.options)
            if spec.options
            else target
        )

    def __call__(self, doc: Doc) -> str | None:
        verdict = self.fn(doc)
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return self.name
        return f"{self.name}:{verdict}"
