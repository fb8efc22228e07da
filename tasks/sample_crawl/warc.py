"""A small WARC/1.0 writer that lays records out the way Common Crawl does.

A file starts with a `warcinfo` record; each fetched page is then a `request`, a `response`
(the HTTP headers and payload) and a `metadata` record, tied together by WARC-Concurrent-To
and to the warcinfo by WARC-Warcinfo-ID. Every record is its own gzip member, so a reader can
seek to any record, and carries a SHA-1 block digest (base32, as Common Crawl writes it); the
response also carries the payload digest and WARC-Identified-Payload-Type.

Output is byte-for-byte deterministic: record ids and dates come from the plan, and gzip
members are written with mtime 0 and no file name.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import gzip
import hashlib
import random
import uuid
from urllib.parse import urlsplit

from tasks.sample_crawl.plan import Page
from tasks.sample_crawl.site import render_page

USER_AGENT = "crawl2chat-sample/1.0 (+https://github.com/crawl2chat; synthetic crawl)"


def sha1_digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def warc_date(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    warc_type: str,
    record_id: str,
    when: dt.datetime,
    block: bytes,
    content_type: str,
    extra: list[tuple[str, str]] = (),
) -> bytes:
    """One WARC record as its own gzip member."""
    headers = [
        ("WARC-Type", warc_type),
        ("WARC-Date", warc_date(when)),
        ("WARC-Record-ID", record_id),
        ("Content-Length", str(len(block))),
        ("Content-Type", content_type),
        *extra,
        ("WARC-Block-Digest", sha1_digest(block)),
    ]
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return gzip.compress(head.encode() + block + b"\r\n\r\n", compresslevel=6, mtime=0)


def urn(value: str) -> str:
    return f"<urn:uuid:{value}>"


def http_payload(page: Page) -> tuple[bytes, str]:
    """(payload bytes, Content-Type header) of a page's HTTP response."""
    if page.body is not None:
        return page.body, page.content_type
    html = render_page(
        page.site,
        page.title,
        page.blocks,
        random.Random(page.shell_seed),
        lang=page.lang,
        charset=page.charset,
        main_html=page.main_html,
    )
    return html.encode(
        page.charset
    ), f"text/html; charset={page.charset.upper() if page.charset == 'utf-8' else page.charset}"


def http_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    """An HTTP/1.1 response head: status line, headers, blank line."""
    return ("\r\n".join([f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n").encode()


def http_response(page: Page) -> tuple[bytes, bytes]:
    """(the whole HTTP response, its payload)."""
    payload, content_type = http_payload(page)
    head = http_head(
        "200 OK",
        [
            ("Date", email.utils.format_datetime(page.date, usegmt=True)),
            ("Server", page.site.server),
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
        ],
    )
    return head + payload, payload


def http_request(page: Page) -> bytes:
    parts = urlsplit(page.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"User-Agent: {USER_AGENT}",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language: en-US,en;q=0.5",
        f"Host: {parts.netloc}",
        "Connection: Keep-Alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _derived_id(record_id: str, role: str) -> str:
    """The request and metadata records' ids, derived from the response's (deterministic)."""
    return str(uuid.uuid5(uuid.UUID(record_id), role))


def write_warc(pages: list[Page], filename: str, crawl: str) -> bytes:
    """A whole WARC file (gzip members concatenated) for `pages`, in order."""
    first = pages[0].date if pages else dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    info_id = urn(str(uuid.uuid5(uuid.NAMESPACE_URL, f"warcinfo:{crawl}:{filename}")))
    info = (
        f"isPartOf: {crawl}\r\n"
        "publisher: crawl2chat\r\n"
        "description: Deterministic sample crawl for the crawl2chat pipeline (synthetic pages)\r\n"
        f"software: crawl2chat sample-crawl\r\n"
        "format: WARC File Format 1.0\r\n"
        "conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/\r\n"
    ).encode()
    out = [record("warcinfo", info_id, first, info, "application/warc-fields", [("WARC-Filename", filename)])]
    for page in pages:
        response_id = urn(page.record_id)
        request_id = urn(_derived_id(page.record_id, "request"))
        meta_id = urn(_derived_id(page.record_id, "metadata"))
        request = http_request(page)
        response, payload = http_response(page)
        common = [("WARC-Warcinfo-ID", info_id), ("WARC-IP-Address", page.ip), ("WARC-Target-URI", page.url)]
        out.append(record("request", request_id, page.date, request, "application/http; msgtype=request", common))
        out.append(
            record(
                "response",
                response_id,
                page.date,
                response,
                "application/http; msgtype=response",
                [
                    *common[:1],
                    ("WARC-Concurrent-To", request_id),
                    *common[1:],
                    ("WARC-Payload-Digest", sha1_digest(payload)),
                    ("WARC-Identified-Payload-Type", page.content_type),
                ],
            )
        )
        fetch_ms = 40 + int(page.record_id[:4], 16) % 900
        meta = f"fetchTimeMs: {fetch_ms}\r\ncharset-detected: {page.charset.upper() if page.body is None else 'none'}\r\n".encode()
        out.append(
            record(
                "metadata",
                meta_id,
                page.date,
                meta,
                "application/warc-fields",
                [("WARC-Warcinfo-ID", info_id), ("WARC-Concurrent-To", response_id), ("WARC-Target-URI", page.url)],
            )
        )
    return b"".join(out)
