"""A folder of real HTML files as a WARC crawl: every page one response record that warcio and the
curate reader both parse, URLs from paths, charsets declared, the same bytes every time."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
from warcio.archiveiterator import ArchiveIterator

from tasks.crawls_html import html_files, write_html_warc
from tasks.curate.config import ReadConfig
from tasks.curate.warc import read_warc
from tasks.doc_sites import SITES, site_warc


def warcio_records(path: Path) -> list[tuple[str, str, str, bytes]]:
    """(type, URL, HTTP Content-Type, payload) of every record, as warcio parses them."""
    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests="raise"):
            ctype = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
            out.append(
                (rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI"), ctype, rec.content_stream().read())
            )
    return out


@pytest.mark.parametrize("site", SITES, ids=lambda s: s.name)
def test_a_real_doc_site_becomes_one_record_per_page(site, tmp_path):
    if not site.available():
        pytest.fail(f"{site.package} is not installed: run `make system-packages`")
    warc, count = site_warc(site, tmp_path, limit=40)
    root = Path(site.root) if site.root else tmp_path / f"{site.name}-html"
    files = html_files(root, limit=40)
    assert count == len(files) == min(40, len(html_files(root))) > 0

    records = warcio_records(warc)  # block and payload digests checked: a wrong one raises
    assert [r[0] for r in records] == ["warcinfo"] + ["response"] * count
    responses = records[1:]
    urls = [r[1] for r in responses]
    assert len(set(urls)) == count and all(u.startswith(site.base_url) for u in urls)
    for (_, url, ctype, payload), path in zip(responses, files):
        raw = path.read_bytes()
        assert payload == (gzip.decompress(raw) if path.name.endswith(".gz") else raw)
        assert unquote(url[len(site.base_url) :]) == path.relative_to(root).as_posix().removesuffix(".gz")
        assert ctype.startswith("text/html")

    read = list(read_warc(str(warc), ReadConfig()))
    limit = ReadConfig().max_html_bytes  # the reader's size cap (node's all-in-one page is above it)
    expected = Counter("too_large" if len(r[3]) > limit else "ok" for r in responses)
    assert Counter(r.reason or "ok" for r in read) == expected
    assert [r.url for r in read] == urls


def test_the_same_folder_gives_the_same_bytes_and_limit_spreads_over_the_site(tmp_path):
    site = next(s for s in SITES if s.name == "postgresql")
    if not site.available():
        pytest.fail("postgresql-doc-15 is not installed: run `make system-packages`")
    a = write_html_warc(site.root, tmp_path / "a.warc.gz", site.base_url, limit=10)
    b = write_html_warc(site.root, tmp_path / "b.warc.gz", site.base_url, limit=10)
    assert a == b == 10
    # the file name goes into warcinfo: compare the records after it
    assert warcio_records(tmp_path / "a.warc.gz")[1:] == warcio_records(tmp_path / "b.warc.gz")[1:]
    names = [p.name for p in html_files(Path(site.root), limit=10)]
    assert names[0] < names[-1] and names[-1][0] > "n"  # from across the alphabet, not its first ten


def test_charsets_compressed_pages_and_odd_names(tmp_path):
    site = tmp_path / "site"
    (site / "sub dir").mkdir(parents=True)
    latin = '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head><body><p>Un caf\xe9 cr\xe8me.</p></body></html>'
    (site / "latin.html").write_bytes(latin.encode("latin-1"))
    (site / "sub dir" / "caf\xe9.html").write_bytes("<html><body><p>caf\xe9 na\xefve</p></body></html>".encode())
    (site / "big.html.gz").write_bytes(gzip.compress(b"<html><body><p>compressed</p></body></html>"))
    (site / "undeclared.htm").write_bytes(b"<html><body><p>\xe9t\xe9 sans d\xe9claration</p></body></html>")
    (site / "style.css").write_text("p {}")
    out = tmp_path / "site.warc.gz"
    assert write_html_warc(site, out, "http://docs.example.org/manual") == 4

    records = {r[1]: r for r in warcio_records(out)[1:]}
    base = "http://docs.example.org/manual/"
    assert sorted(records) == sorted(
        base + p for p in ("big.html", "latin.html", "sub%20dir/caf%C3%A9.html", "undeclared.htm")
    )
    assert records[base + "latin.html"][2] == "text/html; charset=iso8859-1"
    assert records[base + "sub%20dir/caf%C3%A9.html"][2] == "text/html; charset=utf-8"
    assert records[base + "undeclared.htm"][2] == "text/html"  # not UTF-8, nothing declared: the reader sniffs
    assert records[base + "big.html"][3] == b"<html><body><p>compressed</p></body></html>"
    pages = {r.url: r.html for r in read_warc(str(out), ReadConfig())}
    assert "Un caf\xe9 cr\xe8me." in pages[base + "latin.html"]
    assert "caf\xe9 na\xefve" in pages[base + "sub%20dir/caf%C3%A9.html"]


def test_bad_input_is_a_clear_error_and_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_html_warc(tmp_path / "missing", tmp_path / "x.warc.gz", "https://example.org/")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no HTML files"):
        write_html_warc(tmp_path / "empty", tmp_path / "x.warc.gz", "https://example.org/")
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.html").write_text("<p>fine</p>")
    with pytest.raises(ValueError, match="base_url"):
        write_html_warc(site, tmp_path / "x.warc.gz", "docs/")
    (site / "b.html.gz").write_bytes(b"not gzip at all")  # fails after the first record is written
    with pytest.raises(gzip.BadGzipFile):
        write_html_warc(site, tmp_path / "x.warc.gz", "https://example.org/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "site"]


def test_cli_writes_the_crawl(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    site = tmp_path / "site"
    site.mkdir()
    for i in range(3):
        (site / f"p{i}.html").write_text(f"<html><body><p>page {i}</p></body></html>")
    out = tmp_path / "crawl" / "site.warc.gz"
    result = CliRunner().invoke(app, ["crawl-from-html", str(site), str(out), "--base-url", "https://example.org/docs"])
    assert result.exit_code == 0, result.output
    assert "3 pages" in result.output
    assert [r[1] for r in warcio_records(out)[1:]] == [f"https://example.org/docs/p{i}.html" for i in range(3)]
    bad = CliRunner().invoke(
        app, ["crawl-from-html", str(tmp_path / "nope"), str(out), "--base-url", "https://example.org/"]
    )
    assert bad.exit_code != 0 and "no folder" in bad.output
