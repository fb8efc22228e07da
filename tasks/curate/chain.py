"""The per-document chain and its funnel: read -> url -> extract -> normalize -> language -> filters.

With a FineWeb judge (trafilatura's default, tasks/curate/fineweb_extractor.py): read -> url ->
extract (1.11) -> language -> FineWeb's filters -> kept_text (the extractor's text, normalized,
C4's line rules) -> custom filters.

`Chain.run(warc)` yields one `Outcome` per response record (kept or removed with step and
reason) and fills a `Funnel`: documents and characters into and out of every step, the reasons,
the seconds spent, and a few removed examples per step for the run report. This is plain
Python, callable without Prefect; `tasks.curate.stage` wraps it in lake tasks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tasks.curate.config import CurateConfig
from tasks.curate.extract import extractor_for
from tasks.curate.filters import (
    C4QualityFilter,
    CustomFilterStep,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from tasks.curate.language import LanguageFilter
from tasks.curate.normalize import normalize
from tasks.curate.text import Text
from tasks.curate.urls import UrlFilter
from tasks.curate.warc import read_warc

STEPS = (
    "read",
    "url",
    "extract",
    "normalize",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb_quality",
    "kept_text",
    "custom",
    "quality",
    "dedup_exact",
    "dedup_minhash",
    "pii",
)
SNIPPET = 300


@dataclass
class StepStats:
    docs_in: int = 0
    docs_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "chars_in": self.chars_in,
            "chars_out": self.chars_out,
            "seconds": round(self.seconds, 4),
            "reasons": dict(self.reasons.most_common()),
            "examples": self.examples,
        }


class Funnel:
    """Counters per step; mergeable across shards (as JSON dicts)."""

    def __init__(self, examples_per_step: int = 3):
        self.steps: dict[str, StepStats] = {}
        self.examples_per_step = examples_per_step
        self.extra: Counter = Counter()
        self.histograms: dict[str, dict[str, int]] = {}  # step -> ordered bin label -> documents (the quality scores)

    def step(self, name: str) -> StepStats:
        return self.steps.setdefault(name, StepStats())

    def passed(self, name: str, chars_in: int, chars_out: int, seconds: float = 0.0) -> None:
        s = self.step(name)
        s.docs_in += 1
        s.docs_out += 1
        s.chars_in += chars_in
        s.chars_out += chars_out
        s.seconds += seconds

    def dropped(
        self, name: str, chars_in: int, reason: str, url: str | None, text: str | None, seconds: float = 0.0
    ) -> None:
        s = self.step(name)
        s.docs_in += 1
        s.chars_in += chars_in
        s.seconds += seconds
        s.reasons[reason] += 1
        if len(s.examples) < self.examples_per_step:
            s.examples.append({"url": url, "reason": reason, "text": (text or "")[:SNIPPET]})

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.steps.items(), key=lambda kv: STEPS.index(kv[0]) if kv[0] in STEPS else len(STEPS))
        out = {"steps": {k: v.to_dict() for k, v in ordered}, "counts": dict(self.extra)}
        if self.histograms:
            out["histograms"] = self.histograms
        return out

    @staticmethod
    def merge(parts: list[dict[str, Any]], examples_per_step: int = 3) -> dict[str, Any]:
        """Sum funnels given as dicts (from task results), keeping a few examples per step."""
        total = Funnel(examples_per_step)
        for part in parts:
            total.extra.update(part.get("counts", {}))
            for name, bins in part.get("histograms", {}).items():
                merged = total.histograms.setdefault(name, {})
                for label, n in bins.items():
                    merged[label] = merged.get(label, 0) + n
            for name, d in part.get("steps", {}).items():
                s = total.step(name)
                s.docs_in += d["docs_in"]
                s.docs_out += d["docs_out"]
                s.chars_in += d["chars_in"]
                s.chars_out += d["chars_out"]
                s.seconds += d["seconds"]
                s.reasons.update(d["reasons"])
                s.examples.extend(d["examples"][: max(0, examples_per_step - len(s.examples))])
        return total.to_dict()


@dataclass
class Outcome:
    id: str
    url: str | None
    date: str | None
    text: str | None
    language: str | None = None
    language_score: float | None = None
    step: str | None = None  # None: kept
    reason: str | None = None


class Chain:
    """The configured steps, built once per task (the lists and models are shared per process)."""

    def __init__(self, config: CurateConfig):
        self.config = config
        self.url_filter = UrlFilter(config.url) if config.url.enabled else None
        self.extractor = extractor_for(config.extract)
        self.normalize = config.normalize.applies_to(config.extract.extractor)
        # FineWeb's 1.11 gives the text the filters judge; the extractor, the text a kept page keeps
        self.judge = extractor_for(config.extract, fineweb=True) if config.extract.judges_with_fineweb() else None
        self.c4_lines = C4QualityFilter(config.c4) if config.c4.enabled else None
        self.language = LanguageFilter(config.language) if config.language.enabled else None
        self.filters: list[Any] = [
            f
            for f, on in (
                (GopherRepetitionFilter(config.gopher_repetition), config.gopher_repetition.enabled),
                (GopherQualityFilter(config.gopher_quality), config.gopher_quality.enabled),
                (C4QualityFilter(config.c4), config.c4.enabled),
                (FineWebQualityFilter(config.fineweb_quality), config.fineweb_quality.enabled),
            )
            if on
        ]
        self.custom = [CustomFilterStep(spec) for spec in config.custom]

    def run(self, warc: str, funnel: Funnel) -> Iterator[Outcome]:
        for worker in filter(None, (self.extractor, self.judge)):
            worker.reset()  # this file's output must not depend on the files before it
        clock = time.perf_counter
        start = clock()
        for record in read_warc(warc, self.config.read, funnel.extra):
            out = Outcome(id=record.id, url=record.url, date=record.date, text=None)
            if record.reason:
                funnel.dropped("read", 0, record.reason, record.url, None, clock() - start)
                out.step, out.reason = "read", record.reason
                yield out
                start = clock()
                continue
            funnel.passed("read", record.chars, record.chars, clock() - start)
            yield self._document(out, record.page or b"", record.chars, funnel)
            start = clock()

    def _document(self, out: Outcome, page: bytes, chars: int, funnel: Funnel) -> Outcome:
        """One page (UTF-8 HTML of `chars` characters) through the steps after reading."""
        clock = time.perf_counter

        def drop(step: str, chars_in: int, reason: str, seconds: float) -> Outcome:
            funnel.dropped(step, chars_in, reason, out.url, out.text, seconds)
            out.step, out.reason = step, reason
            return out

        if self.url_filter is not None:
            t = clock()
            reason = self.url_filter(out.url or "")
            if reason:
                return drop("url", chars, reason, clock() - t)
            funnel.passed("url", chars, chars, clock() - t)

        t = clock()
        text, reason = self._extract(self.judge or self.extractor, page)
        if reason:
            return drop("extract", chars, reason, clock() - t)
        funnel.passed("extract", chars, len(text), clock() - t)

        if self.judge is None:
            text = self._normalize(text, funnel)
        out.text = text

        if self.language is not None:
            t = clock()
            reason, out.language, out.language_score = self.language(text)
            if reason:
                return drop("language", len(text), reason, clock() - t)
            funnel.passed("language", len(text), len(text), clock() - t)

        doc = Doc(
            id=out.id,
            url=out.url or "",
            view=Text(text),
            metadata={"language": out.language, "language_score": out.language_score},
        )

        def passes(f: Any, guarded: bool) -> bool:
            t = clock()
            before = len(doc.text)
            try:
                reason = f(doc)
            except Exception as exc:
                if not guarded:
                    raise
                reason = f"error:{type(exc).__name__}"  # a user's filter failing drops the doc, visibly
            out.text = doc.text
            if reason:
                drop(f.step, before, reason, clock() - t)
                return False
            funnel.passed(f.step, before, len(doc.text), clock() - t)
            return True

        if not all(passes(f, guarded=False) for f in self.filters):
            return out
        if self.judge is not None:  # FineWeb has decided; the page keeps the extractor's text
            out.text = self._kept_text(page, doc.text, funnel)
            doc.rewrite(out.text)
        for f in self.custom:
            if not passes(f, guarded=True):
                break
        return out

    def _extract(self, worker, page: bytes) -> tuple[str, str | None]:
        text, reason = worker.extract(page)
        text = (text or "").strip()
        if reason is None and len(text) < max(1, self.config.extract.min_chars):
            reason = "empty"
        return text, reason

    def _normalize(self, text: str, funnel: Funnel, as_step: bool = True) -> str:
        """The normalize step (never drops: a stripped non-empty text keeps a non-space character);
        after a judge it is part of `kept_text`, with the same counters."""
        if not self.normalize:
            return text
        t = time.perf_counter()
        changes: Counter = Counter()
        before, text = len(text), normalize(text, self.config.normalize.join_bullets, changes)
        funnel.extra.update({f"normalize_{k}": v for k, v in changes.items()})
        if as_step:
            funnel.passed("normalize", before, len(text), time.perf_counter() - t)
        return text

    def _kept_text(self, page: bytes, judged: str, funnel: Funnel) -> str:
        """A page FineWeb's filters kept, in the extractor's text: extracted, normalized, and with
        C4's line rules applied as they were to the judged text (its document rules have spoken).
        If that leaves nothing, the judged text stays: the page is good either way."""
        t = time.perf_counter()
        text, reason = self._extract(self.extractor, page)
        if reason is None:
            text = self._normalize(text, funnel, as_step=False)
            if self.c4_lines is not None:
                text = self.c4_lines.kept_lines(text)
            reason = None if text else "no_line_kept"
        if reason:
            funnel.extra[f"kept_text_judged_{reason}"] += 1
            text = judged
        funnel.passed("kept_text", len(judged), len(text), time.perf_counter() - t)
        return text
