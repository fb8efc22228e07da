"""A folder of HTML files (a mirrored site, an installed documentation tree) as a WARC crawl.

`write_html_warc(root, out, base_url)` writes one WARC/1.0 file: a `warcinfo` record, then one
`response` record per HTML file, laid out as the sample crawl's writer lays out Common Crawl's
(tasks/sample_crawl/warc.py: a gzip member per record, SHA-1 block and payload digests). The
curate stage then reads it like any crawl.

- URLs come from paths: `{base_url}/{path relative to root}`, percent-encoded; `x.html.gz`
  (Debian compresses large pages) is served decompressed as `x.html`.
- Pages are written in sorted path order; record ids are derived from the URL and dates from the
  file's modification time, so the same folder gives the same bytes.
- The HTTP Content-Type names the charset the page declares in a `<meta>` tag, else utf-8 when
  the bytes are valid UTF-8, else none (the reader then sniffs, as it would on the web).
- `limit` keeps that many pages spread evenly over the sorted list (a sample of the whole site,
  not its alphabetically first pages).

The file is written under a temporary name and renamed at the end: an interrupted run leaves no
half-written WARC behind.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

from tasks.curate.warc import declared_charset
from tasks.sample_crawl.warc import http_head, record, sha1_digest, urn

HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".html.gz", ".htm.gz")
SERVER = "crawl2chat-crawl-from-html/1.0"


def html_files(root: Path, limit: int | None = None) -> list[Path]:
    """The HTML files under `root`, sorted by relative path; `limit` of them spread evenly."""
    files = sorted(
        (p for p in root.rglob("*") if p.name.lower().endswith(HTML_SUFFIXES) and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if limit is not None and 0 <= limit < len(files):
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def page_url(base_url: str, relative: str) -> str:
    if relative.lower().endswith(".gz"):
        relative = relative[:-3]
    return base_url.rstrip("/") + "/" + quote(relative)


def content_type(payload: bytes) -> str:
    """text/html with the charset the page declares (Python's name for it), else utf-8 if it
    decodes as such."""
    declared = declared_charset(payload, None)
    if declared:
        return f"text/html; charset={declared}"
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return "text/html"
    return "text/html; charset=utf-8"


def _records(files: list[Path], root: Path, base_url: str, info_id: str) -> Iterator[bytes]:
    for path in files:
        payload = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            payload = gzip.decompress(payload)
        url = page_url(base_url, path.relative_to(root).as_posix())
        when = dt.datetime.fromtimestamp(int(path.stat().st_mtime), dt.UTC)
        stamp = email.utils.format_datetime(when, usegmt=True)
        head = http_head(
            "200 OK",
            [
                ("Date", stamp),
                ("Server", SERVER),
                ("Last-Modified", stamp),
                ("Content-Type", content_type(payload)),
                ("Content-Length", str(len(payload))),
                ("Connection", "close"),
            ],
        )
        yield record(
            "response",
            urn(str(uuid.uuid5(uuid.NAMESPACE_URL, url))),
            when,
            head + payload,
            "application/http; msgtype=response",
            [
                ("WARC-Warcinfo-ID", info_id),
                ("WARC-Target-URI", url),
                ("WARC-Payload-Digest", sha1_digest(payload)),
                ("WARC-Identified-Payload-Type", "text/html"),
            ],
        )


def write_html_warc(html_root: str | Path, out_path: str | Path, base_url: str, limit: int | None = None) -> int:
    """Write the HTML files under `html_root` as one WARC.gz file at `out_path`; the page count."""
    root, out = Path(html_root), Path(out_path)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    files = html_files(root, limit)
    if not files:
        raise ValueError(f"no HTML files under {root}")
    info_id = urn(str(uuid.uuid5(uuid.NAMESPACE_URL, f"warcinfo:{base_url}:{out.name}")))
    first = dt.datetime.fromtimestamp(int(min(p.stat().st_mtime for p in files)), dt.UTC)
    info = (
        "software: crawl2chat crawl-from-html\r\n"
        f"description: {len(files)} HTML files of {root} served as {base_url}\r\n"
        "format: WARC File Format 1.0\r\n"
        "conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/\r\n"
    ).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(record("warcinfo", info_id, first, info, "application/warc-fields", [("WARC-Filename", out.name)]))
            for rec in _records(files, root, base_url, info_id):
                f.write(rec)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return len(files)
