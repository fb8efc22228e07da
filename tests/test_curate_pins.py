"""Upgrades cannot silently change decisions: for a fixed set of real pages (one or more per
HTML generator, Common Crawl records, news articles), the text each extractor gives is pinned by
its line statistics, and each filter's decision on it is pinned too. Three texts: FineWeb's
trafilatura 1.11 (`fineweb-1.11`, the text the chain's filters judge by default), the project's
trafilatura normalized (the text kept pages keep, judged when `curate.extract.judge` is
`extractor`) and resiliparse.

An extractor upgrade (either trafilatura, resiliparse) or a tokenizer change that moves any of them
fails here, page by page. Then: run benchmarks/curate.py to see what the change does to the
agreement with datatrove, and if it is wanted, refresh the pins with

    python -m tests.test_curate_pins
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from tasks.curate import fineweb_extractor
from tasks.curate.config import CurateConfig, ExtractConfig, ReadConfig
from tasks.curate.extract import Extractor
from tasks.curate.filters import (
    HAS_LETTER,
    C4QualityFilter,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from tasks.curate.language import LanguageFilter
from tasks.curate.normalize import normalize
from tasks.curate.text import Text, sentence_terminals
from tasks.curate.warc import read_warc, utf8_page
from tasks.doc_sites import SITES, render_man_site

PINS = Path(__file__).parent / "pins" / "curate-pages.json"
SHARED_DATA = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# name -> (extractor, run FineWeb's 1.11 from its own folder)
EXTRACTORS = {
    "fineweb-1.11": ("trafilatura", True),
    "trafilatura": ("trafilatura", False),
    "resiliparse": ("resiliparse", False),
}

# (group, path under the site's HTML root): real pages of every generator in the corpus
DOC_PAGES = [
    ("postgresql", "tutorial-concepts.html"),
    ("postgresql", "release-15-8.html"),
    ("postgresql", "catalog-pg-amproc.html"),
    ("maint-guide", "checkit.en.html"),
    ("diffutils", "Adjusting-Output.html"),
    ("doxygen", "examples/define/html/graph_legend.html"),
    ("doxygen", "arch.html"),
    ("docutils", "README.html"),
    ("requests", "user/quickstart.html"),
    ("jinja2", "intro.html"),
    ("junit4", "org/junit/Assert.html"),
    ("nodejs", "timers.html"),
    ("git", "git-add.html"),
    ("coreutils-man", "ls.1.html"),
]
ARTICLES = 4  # the extraction benchmark's first pages (sorted keys)
CC_RECORDS = 4  # the first HTML records of commoncrawl-sample/warcfile.warc.gz


def pinned_pages(tmp: Path) -> dict[str, str]:
    """Page key -> HTML (decoded as the read step decodes it)."""
    sites = {s.name: s for s in SITES}
    out = {}
    for group, rel in DOC_PAGES:
        site = sites[group]
        if not site.available():
            pytest.fail(f"{site.package} is not installed: run `make system-packages`")
        root = Path(site.root) if site.generator != "man2html" else render_man_site(tmp / "man")
        page = utf8_page((root / rel).read_bytes())
        out[f"{group}/{rel}"] = page[0].decode("utf-8", "surrogatepass")
    truth = json.loads((SHARED_DATA / "extraction-benchmark" / "ground-truth.json").read_text())
    for key in sorted(truth)[:ARTICLES]:
        html = gzip.decompress((SHARED_DATA / "extraction-benchmark" / "html" / f"{key}.html.gz").read_bytes())
        out[f"articles/{key}"] = utf8_page(html)[0].decode("utf-8", "surrogatepass")
    records = [
        r
        for r in read_warc(str(SHARED_DATA / "warc" / "commoncrawl-sample" / "warcfile.warc.gz"), ReadConfig())
        if r.reason is None
    ]
    for r in records[:CC_RECORDS]:
        out[f"cc/{r.url}"] = r.html
    return out


def line_stats(text: str) -> dict[str, float | int]:
    """What the line and word rules look at."""
    view = Text(text)
    lines = text.split("\n")
    nonempty = [line for line in lines if line.strip()]
    terminals = sentence_terminals()
    words = view.words
    return {
        "chars": len(text),
        "lines": len(lines),
        "blank_lines": len(lines) - len(nonempty),
        "duplicate_lines": sum(n - 1 for n in Counter(nonempty).values()),
        "short_lines": sum(len(line) <= 30 for line in nonempty),
        "punct_lines": sum(line.endswith(terminals) for line in nonempty),
        "bullet_lines": sum(line.lstrip().startswith(("•", "-")) for line in lines),
        "words": len(words),
        "alpha_words": sum(1 for w in words if HAS_LETTER(w)),
        "paragraphs": len(view.paragraphs),
    }


def measure(tmp: Path) -> dict:
    config = CurateConfig()
    language = LanguageFilter(config.language)
    filters = [
        GopherRepetitionFilter(config.gopher_repetition),
        GopherQualityFilter(config.gopher_quality),
        C4QualityFilter(config.c4),
        FineWebQualityFilter(config.fineweb_quality),
    ]
    pages = pinned_pages(tmp)
    out: dict = {}
    for name, (extractor, fineweb) in EXTRACTORS.items():
        worker = Extractor(ExtractConfig(extractor=extractor, timeout_s=60), fineweb)
        try:
            for key, html in pages.items():
                worker.reset()  # each page on its own: no cache carried over from the page before
                text = (worker.extract(html)[0] or "").strip()
                if text and not fineweb and config.normalize.applies_to(extractor):
                    text = normalize(text, config.normalize.join_bullets)
                entry = {"stats": line_stats(text), "decisions": {}}
                if text:
                    entry["decisions"]["language"] = language(text)[0]
                    for f in filters:  # each filter alone, on the same text
                        entry["decisions"][f.step] = f(Doc(id=key, url="", view=Text(text)))
                out.setdefault(key, {})[name] = entry
        finally:
            worker.close()
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        **{name: version(name) for name in ("trafilatura", "resiliparse")},
        "fineweb-1.11": " ".join(
            f"{k}=={v}" for k, v in fineweb_extractor.installed(fineweb_extractor.folder()).items()
        ),
    }


def test_extracted_text_and_decisions_are_pinned(tmp_path):
    pinned = json.loads(PINS.read_text())
    now = measure(tmp_path)
    changes = []
    for key, per_extractor in pinned["pages"].items():
        for extractor, want in per_extractor.items():
            got = now.get(key, {}).get(extractor)
            if got != want:
                changes.append(
                    f"{extractor} {key}: "
                    + ", ".join(
                        f"{k} {want[part].get(k)} -> {got[part].get(k)}"
                        for part in ("stats", "decisions")
                        for k in sorted(set(want[part]) | set(got[part]))
                        if want[part].get(k) != got[part].get(k)
                    )
                )
    assert not changes, (
        f"pinned with {pinned['versions']}, running {versions()}: the text handed to the filters or a decision changed "
        f"(check benchmarks/curate.py's agreement, then `python -m tests.test_curate_pins`):\n" + "\n".join(changes)
    )
    assert set(now) == set(pinned["pages"])


def test_the_pins_cover_every_generator_and_both_outcomes():
    pinned = json.loads(PINS.read_text())["pages"]
    groups = {key.split("/", 1)[0] for key in pinned}
    assert groups == {s.name for s in SITES} - {"gnu-standards"} | {"articles", "cc"}
    decisions = [d for page in pinned.values() for e in page.values() for d in e["decisions"].values()]
    assert None in decisions and any(decisions)  # pages kept and pages dropped, so either change shows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        PINS.parent.mkdir(exist_ok=True)
        PINS.write_text(
            json.dumps({"versions": versions(), "pages": measure(Path(tmp))}, indent=1, sort_keys=True) + "\n"
        )
    print(f"written {PINS}", file=sys.stderr)
