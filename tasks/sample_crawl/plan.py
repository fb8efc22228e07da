"""The crawl plan: which pages the sample crawl holds, in which order, and what each one is.

`plan(config)` is a pure function of the config: the same seed gives the same pages, URLs,
fetch times and record ids, so every WARC file can be written by its own task without the
others. Clean pages (encyclopedia, math worksheets, stdlib docs) are the large majority; the
planted pages of `PLANTED` (about 11% of the crawl, at least one of each kind) each carry the
curation step that must remove them. Duplicates always come after their original in crawl
order, with a later fetch time and a larger record id, so "keep the earliest" and "keep the
smallest id" both keep the original.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial

from tasks.config import SampleCrawlConfig
from tasks.sample_crawl import docs, encyclopedia, margins, planted, worksheets
from tasks.sample_crawl.site import SITES, Block, Site, expected_text
from tasks.world import World, build_world
from tasks.world import sizes as world_sizes

# kind: (pages per 400, the curation step that must remove it (None: it must survive)).
PLANTED: dict[str, tuple[int, str | None]] = {
    "adult_url": (3, "url"),
    "boilerplate_only": (3, "gopher_repetition"),  # FineWeb's 1.11 extracts only the cookie banner
    "repeated_lines": (3, "gopher_repetition"),
    "too_short": (3, "gopher_quality"),
    "non_english": (6, "language"),
    "lorem_ipsum": (3, "c4"),
    "javascript_notice": (3, "c4"),
    "curly_braces": (3, "c4"),
    "exact_duplicate": (4, "dedup_exact"),
    "near_duplicate": (4, "dedup_minhash"),
    "non_html": (2, "read"),
    "pii": (4, None),
    "legacy_charset": (2, None),
}
CLEAN_KINDS = ("encyclopedia_person", "encyclopedia_town", "encyclopedia_org", "math_worksheet", "stdlib_docs")
DOCS_SHARE = 0.12  # of clean pages, capped by how many stdlib modules make clean pages
ENCYCLOPEDIA_SHARE = 0.5
START = dt.datetime(2024, 3, 1, 6, 0, 0, tzinfo=dt.UTC)


@dataclass
class Page:
    kind: str
    url: str
    site: Site
    title: str
    blocks: list[Block]
    expected_step: str | None = None
    reason: str = ""
    entity_id: str | None = None
    pii: tuple[str, ...] = ()
    facts: list[tuple[str, str]] = field(default_factory=list)  # (entity_id, attribute)
    duplicate_of: str | None = None
    jaccard: float | None = None
    lang: str = "en"
    charset: str = "utf-8"
    main_html: str | None = None  # a main area that is not prose (boilerplate-only pages)
    body: bytes | None = None  # a non-HTML payload, sent as is
    content_type: str = "text/html"
    shell_seed: str = ""  # seeds the shell's ads; a copy reuses its original's for identical bytes
    # Filled in by `plan`: crawl position.
    date: dt.datetime = START
    record_id: str = ""
    ip: str = ""


def slug(text: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def normalize_for_dedup(text: str) -> str:
    """FineWeb's MinHash normalisation: lowercase, digits to 0, no punctuation or accents."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"\d", "0", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def shingles(text: str, n: int = 5) -> set[str]:
    tokens = normalize_for_dedup(text).split()
    return {" ".join(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def counts(pages: int) -> dict[str, int]:
    """Planted pages per kind for a crawl of `pages` pages: scaled from the 400-page mix."""
    return {kind: max(1, round(per400 * pages / 400)) for kind, (per400, _) in PLANTED.items()}


def _check(page: Page, allow: frozenset[str] = frozenset()) -> Page:
    found = margins.problems(expected_text(page.blocks), allow=allow)
    if found:
        raise AssertionError(f"{page.kind} page {page.url} is not clear of curation rules: {found}")
    return page


def _clean_pages(config: SampleCrawlConfig, n_clean: int, rng: random.Random) -> tuple[list[Page], World]:
    n_docs = min(round(n_clean * DOCS_SHARE), len(docs.MODULES))
    doc_pages = docs.docs_pages(n_docs)
    n_wiki = round(n_clean * ENCYCLOPEDIA_SHARE)
    people = max(1, n_wiki * 3 // 4)
    while people > 1 and people + sum(world_sizes(people)) > n_wiki:  # towns and organisations too
        people -= 1
    world = build_world(config.seed, people)
    wiki, out = SITES["wiki"], []
    for kind, entities, write in (
        ("encyclopedia_person", world.people, encyclopedia.person_article),
        ("encyclopedia_town", world.towns, encyclopedia.town_article),
        ("encyclopedia_org", world.orgs, encyclopedia.org_article),
    ):
        for entity in entities:
            a = _first_clear(partial(write, world, entity), f"{config.seed}:{entity.id}", lambda a: a.blocks)
            out.append(
                Page(
                    kind,
                    wiki.url(f"wiki/{a.title.replace(' ', '_')}"),
                    wiki,
                    a.title,
                    a.blocks,
                    entity_id=a.entity_id,
                    facts=a.facts,
                )
            )
    site = SITES["docs"]
    for module, title, blocks in doc_pages:
        out.append(
            Page(
                "stdlib_docs",
                site.url(f"3.11/library/{module}.html"),
                site,
                title,
                blocks,
                entity_id=f"module:{module}",
            )
        )
    site = SITES["math"]
    for i in range(max(0, n_clean - len(out))):
        title, blocks, _ = _first_clear(
            partial(worksheets.worksheet, i, config.seed), f"{config.seed}:sheet:{i}", lambda w: w[1]
        )
        out.append(Page("math_worksheet", site.url(f"worksheets/{slug(title)}.html"), site, title, blocks))
    return out, world  # every one cleared the margin above (docs pages in docs.module_page)


def _first_clear(make, seed: str, blocks_of, attempts: int = 50):
    """The first of a few seeded drafts whose text clears the margin (drafts differ only in
    which sentences and templates they draw; the facts are the same)."""
    for attempt in range(attempts):
        draft = make(random.Random(f"{seed}:{attempt}"))
        if not margins.problems(expected_text(blocks_of(draft))):
            return draft
    raise AssertionError(
        f"no draft of {seed} clears the curation margin: {margins.problems(expected_text(blocks_of(draft)))}"
    )


def _planted(kind: str, i: int, originals: list[Page], rng: random.Random) -> Page:
    step = PLANTED[kind][1]
    topic = ("garden", "harbour", "running", "network")[i % 4]
    site = SITES[{"garden": "blog", "harbour": "news", "running": "forum", "network": "tech"}[topic]]
    path = f"{2024}/{rng.randint(1, 12):02d}/{kind.replace('_', '-')}-{i}.html"
    title = f"{topic.capitalize()} notes {i + 1}"
    if kind == "adult_url":
        adult = SITES["adult"]
        word = ("xxx", "porn", "milf")[i % 3]
        page = Page(
            kind,
            adult.url(f"{word}/watch-{rng.randrange(10**6)}.html"),
            adult,
            title,
            [Block("h1", title), *planted.prose(rng, topic)],
            step,
            f"adult URL: the hard-banned word '{word}' is a token of the URL (its domain also reads 'xxx'); the text itself is clean",
        )
        return _check(page)
    if kind == "boilerplate_only":
        main = planted.BOILERPLATE_MAINS[i % len(planted.BOILERPLATE_MAINS)]
        return Page(
            kind,
            site.url(path),
            site,
            title,
            [],
            step,
            "navigation, banners, ads and footer around a main area with no text: trafilatura 1.11, FineWeb's extractor, whose text the filters judge, falls back to the cookie banner, which Gopher's repetition rule drops (trafilatura 2.x and resiliparse find no main content: with `curate.extract.judge: extractor` the step is extract)",
            main_html=main,
        )
    if kind == "repeated_lines":
        shop = SITES["shop"]
        blocks = [Block("h1", "Windows and doors"), *planted.repeated_lines(rng)]
        page = Page(
            kind,
            shop.url(f"offers/windows-{i}.html"),
            shop,
            "Windows and doors",
            blocks,
            step,
            "15 of 22 lines repeat earlier lines (Gopher: duplicate lines over 0.30 of lines and over 0.20 of characters); each under 100 characters, so trafilatura's own dedup keeps them",
        )
        return _check(page, frozenset({"duplicate_lines", *margins.REPETITION}))
    if kind == "too_short":
        text = planted.TOO_SHORT[i % len(planted.TOO_SHORT)]
        blocks = [Block("h1", "Notice"), Block("p", text)]
        words = len(margins.words(text))
        page = Page(
            kind,
            site.url(path),
            site,
            "Notice",
            blocks,
            step,
            f"about {words} words of clean English: under Gopher's 50-word minimum",
        )
        return _check(page, frozenset({"short", "sentences"}))  # and clear of every repetition rule
    if kind == "non_english":
        lang = ("de", "fr", "es")[i % 3]
        foreign_site = SITES[{"de": "eu", "fr": "fr", "es": "es"}[lang]]
        title = {"de": "Reisebericht", "fr": "Carnet de route", "es": "Diario de viaje"}[lang] + f" {i + 1}"
        blocks = [Block("h1", title), *planted.foreign(rng, lang)]
        return Page(
            kind,
            foreign_site.url(f"{slug(title)}.html"),
            foreign_site,
            title,
            blocks,
            step,
            f"written in {lang}: the English language score is far below 0.65",
            lang=lang,
        )
    if kind == "lorem_ipsum":
        blocks = [Block("h1", title), *planted.prose(rng, topic, 10, 3)]
        blocks.insert(2, Block("p", planted.LOREM))
        page = Page(
            kind,
            site.url(path),
            site,
            title,
            blocks,
            step,
            "a leftover 'lorem ipsum' placeholder paragraph: C4 drops any document containing it",
        )
        return _check(page, frozenset({"lorem"}))
    if kind == "javascript_notice":
        lines = rng.sample(planted.JAVASCRIPT_LINES, 5)
        rest = rng.sample(planted.TOPICS[topic], 2)
        blocks = [Block("h1", title), *(Block("p", s) for s in lines), Block("p", " ".join(rest))]
        page = Page(
            kind,
            site.url(path),
            site,
            title,
            blocks,
            step,
            "5 of 6 text lines mention javascript; C4 drops those lines, leaving 2 sentences, under its minimum of 5",
        )
        return _check(page, frozenset({"javascript"}))
    if kind == "curly_braces":
        blocks = [Block("h1", title), *planted.prose(rng, topic, 10, 3)]
        blocks.insert(2, Block("p", planted.BRACE_LINES[i % len(planted.BRACE_LINES)]))
        page = Page(
            kind,
            site.url(path),
            site,
            title,
            blocks,
            step,
            "an unfilled template placeholder with '{': C4 drops any document containing a curly brace",
        )
        return _check(page, frozenset({"brace"}))
    if kind == "pii":
        blocks, pii, private = planted.with_pii(rng)
        blocks = [Block("h1", title), *blocks]
        page = Page(
            kind,
            SITES["tech"].url(path),
            SITES["tech"],
            title,
            blocks,
            None,
            f"clean page with an email and a public IPv4 address to replace (PII is a rewrite, never a drop); the private {private} is not replaced",
            pii=tuple(pii),
        )
        return _check(page, frozenset({"pii"}))
    if kind == "legacy_charset":
        blocks = [Block("h1", title), *planted.prose(rng, topic, 9, 3)]
        blocks.insert(
            1,
            Block(
                "p",
                "\u201cIt\u2019s the caf\u00e9 by the quay,\u201d said the na\u00efve visitor, and that\u2019s where we went.",
            ),
        )
        page = Page(
            kind,
            site.url(path),
            site,
            title,
            blocks,
            None,
            "windows-1252 bytes, declared in the Content-Type header and the meta tag; not valid UTF-8, so the reader must decode it with the declared charset, after which it is a clean page",
            charset="windows-1252",
        )
        return _check(page)
    if kind == "non_html":
        if i % 2 == 0:
            return Page(
                kind,
                site.url(f"files/report-{i}.pdf"),
                site,
                title,
                [],
                step,
                "application/pdf payload: only HTML responses are read",
                body=planted.minimal_pdf(title),
                content_type="application/pdf",
            )
        body = (
            '{"status": "ok", "items": [' + ", ".join(f'{{"id": {n}, "name": "item {n}"}}' for n in range(5)) + "]}"
        ).encode()
        return Page(
            kind,
            site.url(f"api/v1/items-{i}.json"),
            site,
            title,
            [],
            step,
            "application/json payload: only HTML responses are read",
            body=body,
            content_type="application/json",
        )
    original = originals[i % len(originals)]
    if kind == "exact_duplicate":
        url = (
            original.url.replace("/3.11/", "/3/")
            if "/3.11/" in original.url
            else original.url.replace(".html", f".html?utm_source=newsletter&utm_campaign={i}")
        )
        return replace(
            original,
            kind=kind,
            url=url,
            expected_step=step,
            duplicate_of=original.url,
            jaccard=1.0,
            facts=[],
            reason="the same page under a second URL: byte-identical HTML, so identical text; the original was fetched first",
        )
    assert kind == "near_duplicate"
    text = expected_text(original.blocks)
    changes = max(2, len(margins.words(text)) // 120)
    while True:
        blocks = planted.edit_words(original.blocks, rng, changes)
        similarity = jaccard(text, expected_text(blocks))
        if similarity >= 0.9 or changes == 1:
            break
        changes -= 1
    page = replace(
        original,
        kind=kind,
        url=original.url.replace(".html", f"-printable-{i}.html"),
        blocks=blocks,
        expected_step=step,
        duplicate_of=original.url,
        jaccard=round(similarity, 4),
        facts=[],
        shell_seed=f"near:{i}",
        reason=f"an edited copy ({changes} words changed): 5-gram Jaccard {similarity:.3f} with the original, fetched earlier",
    )
    return _check(page)


def plan(config: SampleCrawlConfig) -> tuple[tuple[Page, ...], World]:
    """Every page of the crawl in fetch order, and the world its encyclopedia describes."""
    return _plan(config.pages, config.seed)


@lru_cache(maxsize=8)
def _plan(n_pages: int, seed: int) -> tuple[tuple[Page, ...], World]:
    config = SampleCrawlConfig(pages=n_pages, seed=seed)
    rng = random.Random(f"plan:{config.seed}")
    per_kind = counts(config.pages)
    n_clean = config.pages - sum(per_kind.values())
    if n_clean < 5:
        raise ValueError(f"{config.pages} pages leave {n_clean} clean pages; use at least {config.pages - n_clean + 5}")
    clean, world = _clean_pages(config, n_clean, rng)
    for p in clean:
        p.shell_seed = p.url
    # Duplicates copy docs pages (mirrors under a version alias) and worksheets (re-posted).
    docs_pages = [p for p in clean if p.kind == "stdlib_docs"] or clean
    sheets = [p for p in clean if p.kind == "math_worksheet"] or clean
    pages = list(clean)
    duplicates = []
    for kind, n in per_kind.items():
        for i in range(n):
            originals = docs_pages if kind == "exact_duplicate" else sheets
            page = _planted(kind, i, originals, rng)
            page.shell_seed = page.shell_seed or page.url
            (duplicates if page.duplicate_of else pages).append(page)
    rng.shuffle(pages)
    for dup in duplicates:  # after its original
        at = next(k for k, p in enumerate(pages) if p.url == dup.duplicate_of)
        pages.insert(rng.randint(at + 1, len(pages)), dup)
    when, ids = START + dt.timedelta(days=config.seed % 28), {}
    for page in pages:
        when += dt.timedelta(seconds=rng.randint(3, 90))
        page.date = when
        page.ip = f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        record = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if page.duplicate_of:
            while record <= ids[page.duplicate_of]:
                record = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        page.record_id = ids[page.url] = record
    assert len(ids) == len(pages), "page URLs must be unique"
    return tuple(pages), world


def files(config: SampleCrawlConfig) -> list[list[Page]]:
    """The pages of each WARC file: consecutive runs of the crawl order."""
    pages, _ = plan(config)
    n = min(config.files, len(pages))
    return [list(pages[len(pages) * k // n : len(pages) * (k + 1) // n]) for k in range(n)]
