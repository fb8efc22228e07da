"""Reading WARC files: real files, every edge case counted with its reason, decoding, and the
URL filter, language ID, extraction time limit and PII scrubbing."""

from __future__ import annotations

import gzip
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.curate import blocklists
from tasks.curate.config import ExtractConfig, LanguageConfig, PiiConfig, ReadConfig, UrlConfig
from tasks.curate.extract import Extractor
from tasks.curate.language import LanguageFilter
from tasks.curate.pii import PiiScrubber
from tasks.curate.urls import UrlFilter
from tasks.curate.warc import dechunk, read_warc, utf8_page


def reasons(path, config: ReadConfig = ReadConfig()) -> Counter:
    return Counter(r.reason or "ok" for r in read_warc(str(path), config))


def warc_record(
    url: str, body: bytes, headers: str = "Content-Type: text/html", status: str = "200 OK", declared: int | None = None
) -> bytes:
    http = f"HTTP/1.1 {status}\r\n{headers}\r\n\r\n".encode() + body
    length = len(http) if declared is None else declared
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:{abs(hash((url, body))):032x}>\r\nWARC-Target-URI: {url}\r\n"
        "WARC-Date: 2024-01-01T00:00:00Z\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    return head + http + b"\r\n\r\n"


def write(tmp_path, name: str, data: bytes, gz: bool = True):
    path = tmp_path / name
    path.write_bytes(b"".join(gzip.compress(r) for r in [data]) if gz else data)
    return path


# -- real files ----------------------------------------------------------------------------


EXPECTED = {
    "commoncrawl-sample/warcfile.warc.gz": {"ok": 16},
    "commoncrawl-sample/clueweb-quirk.warc.gz": {"ok": 29},
    "commoncrawl-sample/clipped.warc.gz": {"truncated": 1},
    "edge-cases/bad.arc": {"arc_format_unsupported": 1},
    "edge-cases/example.arc": {"arc_format_unsupported": 1},
    "edge-cases/example.arc.gz": {"arc_format_unsupported": 1},
    "edge-cases/example-space-in-url.arc": {"arc_format_unsupported": 1},
    "edge-cases/example.warc": {"ok": 1},
    "edge-cases/example.warc.gz": {"ok": 1},
    "edge-cases/example-bad-non-chunked.warc.gz": {"ok": 1},
    "edge-cases/example-bad.warc.gz.bad": {"ok": 1, "http_status_302": 1},
    "edge-cases/example-digest.warc": {},
    "edge-cases/example-iana.org-chunked.warc": {"ok": 1},
    "edge-cases/example-resource.warc.gz": {},
    "edge-cases/example-space-in-target-uri.warc.gz": {},
    "edge-cases/example-trunc.warc": {"digest_mismatch": 1},
    "edge-cases/example-wget-bad-target-uri.warc.gz": {"ok": 1},
    "edge-cases/example-wrong-chunks.warc.gz": {"digest_mismatch": 1},
    "edge-cases/post-test.warc.gz": {"not_html:application/json": 3},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shared_warc_file_reads_with_counted_reasons(shared_data, name):
    assert dict(reasons(shared_data / "warc" / name)) == EXPECTED[name]


def test_every_shared_file_is_covered(shared_data):
    files = {f"{p.parent.name}/{p.name}" for p in (shared_data / "warc").glob("*/*") if p.name != "LICENSE"}
    assert files == set(EXPECTED)


def test_real_pages_keep_ids_urls_dates_and_charsets(shared_data):
    pages = list(read_warc(str(shared_data / "warc/commoncrawl-sample/warcfile.warc.gz"), ReadConfig()))
    assert all(p.id.startswith("<urn:uuid:") and p.url.startswith("http") and p.date.startswith("2020-") for p in pages)
    japanese = [r for r in read_warc(str(shared_data / "warc/commoncrawl-sample/clueweb-quirk.warc.gz"), ReadConfig())]
    assert sum("の" in (r.html or "") for r in japanese) >= 20  # EUC-JP decoded from the declared charset


# -- built edge cases ------------------------------------------------------------------------


def test_truncated_gzip_keeps_what_came_before_and_counts_the_rest(shared_data, tmp_path):
    raw = (shared_data / "warc/commoncrawl-sample/warcfile.warc.gz").read_bytes()
    got = reasons(write(tmp_path, "cut.warc.gz", raw[: len(raw) // 2], gz=False))
    assert got["ok"] >= 5 and got["truncated"] == 1 and sum(got.values()) < 16


def test_corrupt_gzip_in_the_middle_is_counted_not_raised(shared_data, tmp_path):
    raw = (shared_data / "warc/commoncrawl-sample/warcfile.warc.gz").read_bytes()
    got = reasons(write(tmp_path, "bad.warc.gz", raw[:1000] + b"garbage" * 50 + raw[1000:], gz=False))
    assert sum(v for k, v in got.items() if k.startswith("unreadable")) == 1


def test_wrong_content_lengths(tmp_path):
    page = b"<html><body><p>Hello there, this is a page.</p></body></html>"
    good = warc_record("http://a.example/", page)
    short = warc_record("http://b.example/", page, declared=len(page) + 40 - 20)
    data = b"".join(gzip.compress(r) for r in (good, short, good.replace(b"a.example", b"c.example")))
    got = reasons(write(tmp_path, "len.warc.gz", data, gz=False))
    assert got["ok"] >= 2 and sum(got.values()) == 3


def test_size_limit_empty_non_html_and_status(tmp_path):
    big = b"<html><body>" + b"<p>word</p>" * 2000 + b"</body></html>"
    records = [
        warc_record("http://big.example/", big),
        warc_record("http://empty.example/", b"   "),
        warc_record("http://img.example/", b"\x89PNG....", headers="Content-Type: image/png"),
        warc_record("http://gone.example/", b"<html>gone</html>", status="404 Not Found"),
        warc_record("http://fine.example/", b"<html><body>fine</body></html>"),
    ]
    path = write(tmp_path, "mix.warc.gz", b"".join(gzip.compress(r) for r in records), gz=False)
    got = reasons(path, ReadConfig(max_html_bytes=10_000))
    assert got == Counter({"too_large": 1, "empty": 1, "not_html:image/png": 1, "http_status_404": 1, "ok": 1})


def test_chunked_gzip_and_charsets(tmp_path):
    html = "<html><head><meta charset='windows-1251'></head><body>Привет мир</body></html>"
    body = gzip.compress(html.encode("cp1251"))
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    rec = warc_record(
        "http://ru.example/",
        chunked,
        headers="Content-Type: text/html\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip",
    )
    [page] = list(read_warc(str(write(tmp_path, "ru.warc.gz", rec)), ReadConfig()))
    assert "Привет мир" in page.html


def test_undecodable_payload_is_counted(tmp_path):
    rec = warc_record(
        "http://x.example/",
        b"<html>" + bytes(range(128, 256)) * 3 + b"\x00\xff\xfe</html>",
        headers="Content-Type: text/html; charset=utf-8",
    )
    got = reasons(write(tmp_path, "enc.warc.gz", rec))
    assert set(got) <= {"ok", "undecodable"} and sum(got.values()) == 1


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_decode_never_raises(data):
    out = utf8_page(data, "text/html; charset=bogus")
    assert out is None or len(out[0].decode("utf-8")) == out[1]


def decoded(page: tuple[bytes, int] | None) -> str | None:
    if page is None:
        return None
    text = page[0].decode("utf-8")
    assert len(text) == page[1]
    return text


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_utf8_and_declared_charsets_round_trip(text):
    assert decoded(utf8_page(text.encode("utf-8"))) == text.lstrip("\ufeff")
    latin = text.encode("latin-1", "ignore")
    try:
        latin.decode("utf-8")
    except UnicodeDecodeError:
        assert decoded(utf8_page(latin, "text/html; charset=iso-8859-1")) == latin.decode("latin-1")


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8))
def test_dechunk_round_trip(chunks):
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    assert dechunk(body) == b"".join(chunks)


@given(st.binary(max_size=3000))
@settings(max_examples=100, deadline=None)
def test_arbitrary_bytes_never_crash_the_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "f.warc"
    path.write_bytes(b"WARC/1.0\r\n" + data)
    for record in read_warc(str(path), ReadConfig()):
        assert record.reason or record.html is not None


# -- url filter ---------------------------------------------------------------------------------


def test_url_filter_rules_on_the_fallback_list():
    f = UrlFilter(UrlConfig(blocklist_dir=str(blocklists.FALLBACK_DIR), extra_urls=["https://blocked.example/page"]))
    assert f("https://www.pornhub.com/x") == "domain"
    assert f("http://blocked.example/page") == "url"
    assert f("https://news.example.org/PORN-story") == "hard_blacklisted"
    assert f("https://news.example.org/sexy-nude-pics") == "soft_blacklisted"
    assert f("https://news.example.org/sexy-pics") is None  # one soft word is below the threshold
    assert f("https://news.example.org/articles/freepornvideos") == "blacklisted_subword"
    assert f("https://en.wikipedia.org/wiki/Lighthouse") is None


def test_url_filter_subdomain_rule(tmp_path):
    (tmp_path / "domains.txt").write_text("bad.blogs.com\n")
    f = UrlFilter(UrlConfig(blocklist_dir=str(tmp_path)))
    assert f("http://bad.blogs.com/post") == "subdomain"
    assert f("http://good.blogs.com/post") is None


@pytest.mark.skipif(
    not (blocklists.DEFAULT_DIR / "domains.npy").exists(), reason="FineWeb lists not fetched (make setup)"
)
def test_finewebs_lists_are_the_default_and_memory_mapped():
    f = UrlFilter(UrlConfig())
    assert "datatrove" in f.lists.source and len(f.lists.domains) > 4_000_000
    assert f("http://0-1sex.com/") == "domain"
    assert f("https://www.bbc.co.uk/news") is None
    assert f.lists.domains.__class__.__name__ == "memmap"


def test_tldextract_never_touches_the_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from tasks.curate import urls

    urls._tld_extractor.cache_clear()
    assert urls._tld_extractor()("http://a.b.example.co.uk/").top_domain_under_public_suffix == "example.co.uk"


# -- language, extraction, PII ---------------------------------------------------------------------


def test_language_threshold_edge():
    text = "The old lighthouse keeper climbed the stairs every evening to light the lamp."
    score = LanguageFilter(LanguageConfig()).predict(text)[1]
    assert LanguageFilter(LanguageConfig(threshold=score - 1e-6))(text)[0] is None
    assert LanguageFilter(LanguageConfig(threshold=score))(text)[0] == "low_score"  # strict >
    reason, language, _ = LanguageFilter(LanguageConfig())(
        "Der alte Leuchtturmwärter stieg jeden Abend die Treppe hinauf."
    )
    assert (reason, language) == ("de", "de")
    assert (
        LanguageFilter(LanguageConfig(languages=None))(
            "Der alte Leuchtturmwärter stieg jeden Abend die Treppe hinauf."
        )[0]
        is None
    )


@pytest.mark.slow
def test_extraction_time_limit_kills_and_respawns_the_worker(shared_data):
    slow = (
        "<html><body>"
        + "".join(
            f"<div class='c{i % 7}'><p>Paragraph {i} about topic {i * 7 % 13}.</p><a href='/x{i}'>link {i}</a></div>"
            for i in range(12000)
        )
        + "</body></html>"
    )
    page = (
        gzip.open(sorted((shared_data / "extraction-benchmark/html").glob("*.html.gz"))[0])
        .read()
        .decode("utf-8", "replace")
    )
    extractor = Extractor(ExtractConfig(timeout_s=1.0))
    try:
        assert extractor.extract(page)[0]  # starts the worker
        started = time.monotonic()
        assert extractor.extract(slow) == (None, "timeout")
        assert time.monotonic() - started < 3
        text, reason = extractor.extract(page)  # a fresh worker
        assert reason is None and text.startswith("Gaming used to be so simple")
    finally:
        extractor.close()


def test_resiliparse_extracts_text():
    extractor = Extractor(ExtractConfig(extractor="resiliparse"))
    try:
        text, reason = extractor.extract(
            "<html><body><nav>Home | About</nav><article><h1>Title</h1><p>"
            + "A long paragraph of real text. " * 20
            + "</p></article></body></html>"
        )
        assert reason is None and "A long paragraph" in text
    finally:
        extractor.close()


def test_a_worker_that_cannot_start_says_why_in_its_own_words(tmp_path, monkeypatch):
    """The broken install a new user met: lxml 6 without lxml_html_clean, which jusText (and so
    trafilatura) imports. Shadowed here by a module that fails to import, on the worker's path;
    the error must carry the child's own message, not only "did not start"."""
    (tmp_path / "lxml_html_clean.py").write_text("raise ImportError('lxml_html_clean is missing here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    extractor = Extractor(ExtractConfig())
    try:
        with pytest.raises(RuntimeError) as failure:
            extractor.extract("<html><body><p>never extracted</p></body></html>")
    finally:
        extractor.close()
    message = str(failure.value)
    assert message.startswith("the trafilatura worker did not start: ")
    assert "ImportError: lxml.html.clean module is now a separate project lxml_html_clean" in message  # lxml's words


def test_pii_as_fineweb_plus_options():
    scrub = PiiScrubber(PiiConfig())
    out = scrub("Write to Jane.Doe@Example.COM or ops@site.org from 8.8.8.8, not 192.168.0.1 or 127.0.0.1.")
    assert "Jane.Doe" not in out and "email@example.com" in out and "firstname.lastname@example.org" in out
    assert "8.8.8.8" not in out and "22.214.171.124" in out
    assert "192.168.0.1" in out and "127.0.0.1" in out
    text = "Call +1 (415) 555-2671 or 2607:f8b0:4005:80a::200e"
    assert scrub(text) == text  # off by default, as in FineWeb
    full = PiiScrubber(PiiConfig(phone_numbers=True, ipv6=True))(text)
    assert "555-2671" not in full and "2607:f8b0" not in full


@pytest.mark.slow
def test_trafilatura_dedup_cache_is_reset_between_files(shared_data):
    """trafilatura's deduplicate drops segments seen on earlier pages of the same process; a
    reset makes the same page extract the same way again."""
    page = (
        gzip.open(sorted((shared_data / "extraction-benchmark/html").glob("*.html.gz"))[1])
        .read()
        .decode("utf-8", "replace")
    )
    extractor = Extractor(ExtractConfig())
    try:
        seen = [extractor.extract(page)[0] for _ in range(4)]
        extractor.reset()
        after_reset = extractor.extract(page)[0]
    finally:
        extractor.close()
    assert seen[3] != seen[0]  # the cache at work: segments seen too often are gone by the 4th time
    assert after_reset == seen[0]
