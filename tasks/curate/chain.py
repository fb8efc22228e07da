"""The per-document chain and its funnel: read -> url -> extract -> normalize -> language -> filters.

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
        ] + [CustomFilterStep(spec) for spec in config.custom]

    def run(self, warc: str, funnel: Funnel) -> Iterator[Outcome]:
        self.extractor.reset()  # this file's output must not depend on the files before it
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
        text, reason = self.extractor.extract(page)
        text = (text or "").strip()
        if reason is None and len(text) < max(1, self.config.extract.min_chars):
            reason = "empty"
        if reason:
            return drop("extract", chars, reason, clock() - t)
        funnel.passed("extract", chars, len(text), clock() - t)

        if self.normalize:  # never drops: a stripped non-empty text keeps a non-space character
            t = clock()
            changes: Counter = Counter()
            before, text = len(text), normalize(text, self.config.normalize.join_bullets, changes)
            funnel.extra.update({f"normalize_{k}": v for k, v in changes.items()})
            funnel.passed("normalize", before, len(text), clock() - t)
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
        for f in self.filters:
            t = clock()
            before = len(doc.text)
            try:
                reason = f(doc)
            except Exception as exc:
                if f.step != "custom":
                    raise
                reason = f"error:{type(exc).__name__}"  # a user's filter failing drops the doc, visibly
            out.text = doc.text
            if reason:
                return drop(f.step, before, reason, clock() - t)
            funnel.passed(f.step, before, len(doc.text), clock() - t)
        out.text = doc.text
        return out
