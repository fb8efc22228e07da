"""The sample crawl: real WARC that standard readers parse and verify, deterministic from a
seed, with a ground truth that agrees with its pages."""

from __future__ import annotations

import gzip
import io
from collections import Counter, defaultdict

import pytest
import trafilatura
from fastwarc.warc import ArchiveIterator as FastIterator
from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator

from models import lake, storage
from tasks.config import LakeConfig, SampleCrawlConfig
from tasks.sample_crawl import commit_crawl, plan, write_warc_file
from tasks.sample_crawl.margins import problems
from tasks.sample_crawl.site import expected_text
from tasks.sample_crawl.warc import write_warc

TRAFILATURA = dict(favor_precision=True, include_comments=False, deduplicate=False)


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """The default (tiny) crawl, written with the plain functions the flow maps."""
    root = str(tmp_path_factory.mktemp("lake"))
    config = SampleCrawlConfig()
    out = commit_crawl.fn(root, config, [write_warc_file.fn(root, config, i) for i in range(config.files)])
    truth = lake.scan(out["truth"]).collect().to_dicts()
    facts = lake.scan(out["facts"]).collect().to_dicts()
    records = {}  # response record id -> (url, headers, payload)
    for uri in out["warcs"]:
        with io.BytesIO(storage.read_bytes(uri)) as f:
            for rec in ArchiveIterator(f, check_digests="raise"):
                if rec.rec_type == "response":
                    rid = rec.rec_headers.get_header("WARC-Record-ID")
                    records[rid] = (
                        rec.rec_headers.get_header("WARC-Target-URI"),
                        rec.rec_headers,
                        rec.http_headers,
                        rec.content_stream().read(),
                    )
    return dict(out=out, truth=truth, facts=facts, records=records, config=config)


def test_warcio_reads_every_record_with_verified_digests(crawl):
    types: Counter[str] = Counter()
    for uri in crawl["out"]["warcs"]:
        data = storage.read_bytes(uri)
        it = ArchiveIterator(io.BytesIO(data), check_digests="raise")
        concurrent, ids = {}, set()
        for rec in it:
            rec.content_stream().read()
            types[rec.rec_type] += 1
            assert rec.digest_checker.passed is not False
            h = rec.rec_headers
            ids.add(h.get_header("WARC-Record-ID"))
            if rec.rec_type != "warcinfo":
                assert (
                    h.get_header("WARC-Warcinfo-ID")
                    and h.get_header("WARC-Target-URI")
                    and h.get_header("WARC-Block-Digest")
                )
            if rec.rec_type == "response":
                assert h.get_header("WARC-Payload-Digest") and h.get_header("WARC-Identified-Payload-Type")
                concurrent[h.get_header("WARC-Record-ID")] = h.get_header("WARC-Concurrent-To")
            # Each record is its own gzip member, as in Common Crawl: it decompresses alone.
            member = data[it.get_record_offset() : it.get_record_offset() + it.get_record_length()]
            assert gzip.decompress(member).startswith(b"WARC/1.0\r\n")
        assert all(req in ids for req in concurrent.values()), "a response points at a request not in its file"
    pages = crawl["config"].pages
    assert types == {"warcinfo": crawl["config"].files, "request": pages, "response": pages, "metadata": pages}


def test_fastwarc_reads_and_verifies_digests(crawl):
    responses = 0
    for uri in crawl["out"]["warcs"]:
        data = storage.read_bytes(uri)
        for rec in FastIterator(io.BytesIO(data), parse_http=False):  # the block: HTTP headers too
            assert rec.verify_block_digest(), rec.record_id
        for rec in FastIterator(io.BytesIO(data), record_types=WarcRecordType.response, parse_http=True):
            assert rec.verify_payload_digest(), rec.record_id
            assert rec.http_headers.status_code == 200
            responses += 1
    assert responses == crawl["config"].pages


def test_a_corrupted_byte_fails_the_digest():
    pages = plan.files(SampleCrawlConfig(pages=40, files=1))[0][:3]
    data = bytearray(gzip.decompress(write_warc(pages, "x.warc.gz", "x")))
    at = data.index(b"<article>") + 12
    data[at] = ord("#") if data[at] != ord("#") else ord("%")
    with pytest.raises(Exception, match="digest"):
        for rec in ArchiveIterator(io.BytesIO(bytes(data)), check_digests="raise"):
            rec.content_stream().read()


def _all_bytes(config: SampleCrawlConfig) -> list[bytes]:
    plan._plan.cache_clear()  # recompute from scratch: determinism, not the cache
    return [write_warc(pages, f"{i}.warc.gz", config.name) for i, pages in enumerate(plan.files(config))]


def test_same_seed_is_byte_identical_and_another_seed_differs():
    config = SampleCrawlConfig(pages=60, files=2, seed=7)
    first, again = _all_bytes(config), _all_bytes(config)
    assert first == again
    other = _all_bytes(SampleCrawlConfig(pages=60, files=2, seed=8))
    assert all(a != b for a, b in zip(first, other))


@pytest.mark.parametrize("pages", [20, 60, 150])
def test_size_knob_scales_the_page_count(pages):
    config = SampleCrawlConfig(pages=pages, files=3)
    all_pages = [p for f in plan.files(config) for p in f]
    assert len(all_pages) == pages
    assert len({p.url for p in all_pages}) == pages
    kinds = Counter(p.kind for p in all_pages)
    assert set(plan.PLANTED) <= set(kinds), "every planted kind is present at any size"


def test_truth_rows_match_response_records(crawl):
    truth, records = crawl["truth"], crawl["records"]
    assert len(truth) == len(records) == crawl["config"].pages
    for row in truth:
        url, headers, _, _ = records[row["record_id"]]
        assert url == row["url"]
        assert row["warc"] in crawl["out"]["warcs"]
    kinds = Counter(r["kind"] for r in truth)
    assert set(plan.PLANTED) <= set(kinds)
    steps = {r["kind"]: r["expected_step"] for r in truth}
    assert (
        steps["adult_url"] == "url"
        and steps["non_english"] == "language"
        and steps["near_duplicate"] == "dedup_minhash"
    )
    clean = sum(n for k, n in kinds.items() if k in plan.CLEAN_KINDS)
    assert clean / len(truth) > 0.85, "clean English pages must be the large majority"


def _page_text(record) -> str:
    _, _, http, payload = record
    content_type = http.get_header("Content-Type")
    return payload.decode(content_type.split("charset=")[-1] if "charset=" in content_type else "latin-1")


def test_pii_strings_occur_in_their_pages(crawl):
    rows = [r for r in crawl["truth"] if r["pii"]]
    assert rows and all(r["expected_step"] is None for r in rows)
    for row in rows:
        html = _page_text(crawl["records"][row["record_id"]])
        for s in row["pii"]:
            assert s in html
    others = [r for r in crawl["truth"] if not r["pii"] and r["kind"] != "non_html"]
    assert not any(
        "@" in _page_text(crawl["records"][r["record_id"]]).split("<article>")[1].split("</article>")[0] for r in others
    )


def test_duplicates_really_are_duplicates(crawl):
    by_url = {r["url"]: r for r in crawl["truth"]}
    order = {r["record_id"]: i for i, r in enumerate(crawl["truth"])}
    for row in crawl["truth"]:
        if not row["duplicate_of"]:
            continue
        original = by_url[row["duplicate_of"]]
        assert original["expected_step"] is None
        # The original comes first in every order a deduplicator might use.
        assert original["record_id"] < row["record_id"]
        assert order[original["record_id"]] < order[row["record_id"]] or original["warc"] < row["warc"]
        copy_html = _page_text(crawl["records"][row["record_id"]])
        orig_html = _page_text(crawl["records"][original["record_id"]])
        if row["kind"] == "exact_duplicate":
            assert copy_html == orig_html and row["jaccard"] == 1.0
        else:
            # Recompute the Jaccard from the pages as a real extractor sees them.
            measured = plan.jaccard(
                trafilatura.extract(orig_html, **TRAFILATURA), trafilatura.extract(copy_html, **TRAFILATURA)
            )
            assert measured == pytest.approx(row["jaccard"], abs=0.02)
            assert 0.85 < row["jaccard"] < 1.0


@pytest.mark.slow
def test_clean_pages_are_far_apart():
    """No two clean pages are near duplicates by accident (FineWeb's MinHash flags ~0.72+)."""
    pages, _ = plan.plan(SampleCrawlConfig())
    clean = [p for p in pages if p.kind in plan.CLEAN_KINDS]
    index: dict[str, list[int]] = defaultdict(list)
    sets = [plan.shingles(expected_text(p.blocks)) for p in clean]
    for i, s in enumerate(sets):
        for g in s:
            index[g].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for members in index.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                shared[members[a], members[b]] += 1
    worst = max((n / len(sets[a] | sets[b]) for (a, b), n in shared.items()), default=0.0)
    assert worst < 0.5


def test_every_clean_page_clears_the_margin_and_extracts_to_its_main_text(crawl):
    pages, _ = plan.plan(crawl["config"])
    for page in pages:
        if page.kind in plan.CLEAN_KINDS:
            assert problems(expected_text(page.blocks)) == [], page.url
    # The extractor keeps the main text and drops the shell (cookie banner, ads, footer).
    by_id = {f"<urn:uuid:{p.record_id}>": p for p in pages}
    seen = set()
    for rid, record in crawl["records"].items():
        page = by_id[rid]
        if page.kind in seen or page.kind not in (*plan.CLEAN_KINDS, "pii", "legacy_charset"):
            continue
        seen.add(page.kind)
        assert trafilatura.extract(_page_text(record), **TRAFILATURA) == expected_text(page.blocks)
    assert len(seen) == len(plan.CLEAN_KINDS) + 2


def test_planted_pages_break_their_rule(crawl):
    pages, _ = plan.plan(crawl["config"])
    by_kind = defaultdict(list)
    for p in pages:
        by_kind[p.kind].append(p)
    for p in by_kind["boilerplate_only"]:
        html = _page_text(crawl["records"][f"<urn:uuid:{p.record_id}>"])
        assert "cookie" in html and not trafilatura.extract(html, **TRAFILATURA)
    for p in by_kind["too_short"]:
        assert 15 < len(expected_text(p.blocks).split()) < 45
    for p in by_kind["lorem_ipsum"]:
        assert "lorem ipsum" in expected_text(p.blocks).lower()
    for p in by_kind["curly_braces"]:
        assert "{" in expected_text(p.blocks)
    for p in by_kind["javascript_notice"]:
        kept = [b.text for b in p.blocks[1:] if "javascript" not in b.text.lower()]
        assert sum(t.count(".") for t in kept) < 5
    for p in by_kind["repeated_lines"]:
        lines = expected_text(p.blocks).split("\n")
        repeats = [line for line, n in Counter(lines).items() if n > 1]
        assert 1 - len(set(lines)) / len(lines) > 0.5 and all(len(line) < 100 for line in repeats)
    for p in by_kind["adult_url"]:
        assert any(w in p.url.replace(".", "/").split("/") or w in p.url.split("-") for w in ("xxx", "porn", "milf"))
    for p in by_kind["non_english"]:
        text = expected_text(p.blocks).lower().split()
        assert sum(w in {"the", "and", "of"} for w in text) == 0 and p.lang != "en"


def test_charset_and_non_html_records(crawl):
    for row in crawl["truth"]:
        _, headers, http, payload = crawl["records"][row["record_id"]]
        if row["kind"] == "legacy_charset":
            assert "windows-1252" in http.get_header("Content-Type")
            with pytest.raises(UnicodeDecodeError):
                payload.decode("utf-8")
            assert "caf\u00e9" in payload.decode("windows-1252")
        elif row["kind"] == "non_html":
            assert headers.get_header("WARC-Identified-Payload-Type") in ("application/pdf", "application/json")
        else:
            assert headers.get_header("WARC-Identified-Payload-Type") == "text/html"


def test_facts_are_stated_on_their_pages(crawl):
    html_by_url = {rec[0]: _page_text(rec) for rec in crawl["records"].values()}
    pages_per_person: dict[str, set[str]] = defaultdict(set)
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in crawl["facts"]:
        assert f["value"] in html_by_url[f["url"]], f
        values[f["entity_id"], f["attribute"]].add(f["value"])
        if f["entity_id"].startswith("person-"):
            pages_per_person[f["entity_id"]].add(f["url"])
    assert all(len(v) == 1 for v in values.values()), "one value per attribute"
    assert all(2 <= len(urls) <= 3 for urls in pages_per_person.values())
    _, world = plan.plan(crawl["config"])
    assert len(pages_per_person) == len(world.people)
    every_page = "\n".join(html_by_url.values())
    for name in world.unknown_names:
        assert name not in every_page and name.split()[1] not in every_page


def test_flow_writes_the_crawl_and_reruns_from_cache(prefect_server, lake_root):
    from flows.sample_crawl import sample_crawl

    config = SampleCrawlConfig(pages=40, files=2, name="flowtest")
    out = sample_crawl(lake=LakeConfig(root=lake_root), config=config)
    assert out["crawl"] == "flowtest" and len(out["warcs"]) == 2 and out["pages"] == 40
    assert lake.manifest(out["truth"]).rows == 40 and lake.manifest(out["facts"]).rows > 0
    identities = [lake.identity(u) for u in (*out["warcs"], out["truth"], out["facts"])]
    again = sample_crawl(lake=LakeConfig(root=lake_root), config=config)
    assert again == out
    # A cache hit rewrites nothing: the files and manifests are the very same objects.
    assert [lake.identity(u) for u in (*out["warcs"], out["truth"], out["facts"])] == identities
