"""Reading WARC files into HTML pages, with every bad record counted, never a crashed shard.

fastwarc parses the WARC framing (in quirks mode, so WARC 0.18 and off-by-a-few Content-Length
headers resynchronise instead of ending the file). The HTTP layer is parsed here from the raw
record block, because the checks FineWeb's reader skips need the raw bytes: a record shorter
than its Content-Length (a truncated file or clipped record), a block digest that does not
match, chunked and compressed bodies (inflated no further than the size limit: a bomb of a megabyte
can hold gigabytes), the HTTP status, and a Content-Length that runs into the records after it
(they are parsed back out of its block, never silently swallowed).

Each response record becomes one `Record`: an HTML page, or a rejection with the reason. A file
that cannot be read at all (an ARC file, garbage) or stops being readable (a corrupt gzip member)
yields one rejection for the unreadable part, so nothing disappears without a trace. Errors of
the storage itself (a dropped S3 connection) are raised, for the task's retries.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import io
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from fastwarc.warc import ArchiveIterator, WarcRecordType

from models import lake
from tasks.curate.config import ReadConfig

NEXT_RECORD_RE = re.compile(rb"\r\n\r\nWARC/1\.[01]\r\n")  # a record's end, then the next one's version line
META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
HEAD_SNIFF = 2048


@dataclass
class Record:
    id: str
    url: str | None
    date: str | None
    page: bytes | None = None  # the HTML as UTF-8: what the extraction worker is sent
    chars: int = 0  # the page's length in characters
    reason: str | None = None  # why the read step rejects it; None when `page` is a page

    @property
    def html(self) -> str | None:
        return None if self.page is None else self.page.decode("utf-8", "surrogatepass")


class _Tracked:
    """A file wrapper that remembers whether the storage itself failed (to tell a network
    error, which a retry fixes, from a corrupt file, which it never will)."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.failed = False

    def read(self, n: int = -1) -> bytes:
        try:
            return self._f.read(n)
        except BaseException:
            self.failed = True
            raise

    def __getattr__(self, name: str):  # tell, seekable, ... from the real file
        return getattr(self._f, name)


def sniff_format(head: bytes) -> str | None:
    """Why a file is not a WARC file, judged from its first bytes, or None if it looks like one."""
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 64)
        except zlib.error:
            return "bad_gzip"
    head = head.lstrip()
    if not head:
        return "empty_file"
    if head.startswith(b"filedesc://"):
        return "arc_format_unsupported"
    if not head.startswith(b"WARC/"):
        return "not_warc"
    return None


def read_warc(uri: str, config: ReadConfig, counts: Counter | None = None) -> Iterator[Record]:
    """Every response record of a WARC file as a `Record`; `counts` gets records by type."""
    counts = counts if counts is not None else Counter()
    fs, path = lake.filesystem(uri)
    with fs.open(path, "rb") as f:
        problem = sniff_format(f.read(4096))
    if problem:
        counts["file_" + problem] += 1
        yield Record(id=f"{uri}#file", url=None, date=None, reason=problem)
        return
    index = 0
    with fs.open(path, "rb") as f:
        stream = _Tracked(f)
        records = ArchiveIterator(
            stream, parse_http=False, quirks_mode=True, record_types=WarcRecordType.any_type, fsspec_args=False
        )
        try:
            for record in records:
                index += 1
                kind = _record_type(record)
                counts[f"records_{kind}"] += 1
                if kind == "response":
                    yield from _response_and_swallowed(record, uri, str(index), config, counts)
                else:
                    record.reader.consume()
        except BaseException as exc:
            # fastwarc reports a corrupt file as a plain OSError (and a bug of its own as a
            # pyo3 PanicException); anything the storage raised goes up to the retries.
            corrupt = type(exc) is OSError or type(exc).__name__ == "PanicException"
            if stream.failed or not corrupt:
                raise
            counts["file_unreadable"] += 1
            yield Record(id=f"{uri}#after-{index}", url=None, date=None, reason=f"unreadable: {exc}"[:200])


def _response_and_swallowed(record, uri: str, index: str, config: ReadConfig, counts: Counter) -> Iterator[Record]:
    """A response record, then the records its block swallowed, if its Content-Length ran
    past its end: fastwarc cannot see where a gzip member ends, so the records that follow
    would be read as its body and vanish. They are parsed from that body instead; the last
    one is cut where the overrun ends (reason `cut_by_length_overrun`)."""
    rec, swallowed = _response(record, uri, index, config)
    yield rec
    if not swallowed:
        return
    inner = ArchiveIterator(
        io.BytesIO(swallowed),
        parse_http=False,
        quirks_mode=True,
        record_types=WarcRecordType.any_type,
        fsspec_args=False,
    )
    for n, found in enumerate(inner, 1):
        kind = _record_type(found)
        counts[f"records_{kind}"] += 1
        if kind != "response":
            found.reader.consume()
            continue
        for rec in _response_and_swallowed(found, uri, f"{index}.{n}", config, counts):
            if rec.reason == "truncated":  # not in the file: the overrun took its end
                rec.reason = "cut_by_length_overrun"
            yield rec


def _swallowed_at(block: bytes, digest: str | None) -> int | None:
    """Where another record starts inside `block`, or None. A block whose SHA-1 digest matches
    is exactly what its writer wrote, whatever it contains."""
    found = NEXT_RECORD_RE.search(block)
    if found is None or digest and digest.lower().startswith("sha1:") and _digest_ok(digest, block):
        return None
    return found.start() + 4


def _record_type(record) -> str:
    name = str(record.record_type)
    return name.rsplit(".", 1)[-1]


def _response(record, uri: str, index: str, config: ReadConfig) -> tuple[Record, bytes]:
    """The record as a page or a rejection, and the bytes of the records it swallowed."""
    headers = record.headers
    rec = Record(
        id=headers.get("WARC-Record-ID") or f"{uri}#{index}",
        url=(headers.get("WARC-Target-URI") or "").strip("<> ") or None,
        date=headers.get("WARC-Date") or None,
    )
    try:
        declared = int(headers.get("Content-Length") or "")
    except ValueError:
        declared = -1
    limit = config.max_html_bytes + 65536  # the payload limit plus room for HTTP headers
    block = record.reader.read(limit + 1)
    swallowed = _swallowed_at(block, headers.get("WARC-Block-Digest"))
    if len(block) > limit:
        record.reader.consume()
    if swallowed is not None:
        rec.reason = "length_overrun"  # its Content-Length runs into the next record
        return rec, block[swallowed:]
    if len(block) > limit:
        rec.reason = "too_large"
    elif declared >= 0 and len(block) < declared:
        rec.reason = "truncated"
    elif not rec.url:
        rec.reason = "no_url"
    elif config.verify_digests and not _digest_ok(headers.get("WARC-Block-Digest"), block):
        rec.reason = "digest_mismatch"
    if rec.reason:
        return rec, b""
    status, http_headers, body = parse_http(block)
    if status is None:
        rec.reason = "bad_http"
    elif config.require_http_ok and not 200 <= status < 300:
        rec.reason = f"http_status_{status}"
    if rec.reason:
        return rec, b""
    try:
        body = decode_body(body, http_headers, config.max_html_bytes)
    except ValueError as exc:
        rec.reason = str(exc)
        return rec, b""
    if len(body) > config.max_html_bytes:
        rec.reason = "too_large"
    elif not body.strip():
        rec.reason = "empty"
    elif not _is_html(headers.get("WARC-Identified-Payload-Type"), http_headers.get("content-type"), body, config):
        declared_type = headers.get("WARC-Identified-Payload-Type") or http_headers.get("content-type") or "unknown"
        rec.reason = "not_html:" + declared_type.split(";")[0].strip().lower()[:60]
    else:
        page = utf8_page(body, http_headers.get("content-type"))
        if page is None:
            rec.reason = "undecodable"
        else:
            rec.page, rec.chars = page
    return rec, b""


def _digest_ok(digest: str | None, block: bytes) -> bool:
    """True unless the record carries a sha1 block digest that does not match."""
    if not digest or not digest.lower().startswith("sha1:"):
        return True
    expected = digest.split(":", 1)[1].strip().upper()
    actual = hashlib.sha1(block).digest()
    return expected in (base64.b32encode(actual).decode(), actual.hex().upper())


def parse_http(block: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a raw HTTP response; status None if malformed."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    if not sep:
        return None, {}, b""
    lines = head.decode("latin-1").splitlines()
    parts = lines[0].split(None, 2) if lines else []
    if len(parts) < 2 or not parts[0].upper().startswith("HTTP/") or not parts[1].isdigit():
        return None, {}, b""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, body


def dechunk(body: bytes) -> bytes:
    """Undo chunked transfer encoding; raises ValueError on a malformed body."""
    out, pos = bytearray(), 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise ValueError("chunked")
        size = int(body[pos:end].split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return bytes(out)
        start = end + 2
        if start + size > len(body):
            raise ValueError("chunked")
        out += body[start : start + size]
        pos = start + size + 2


def decode_body(body: bytes, headers: dict[str, str], limit: int | None = None) -> bytes:
    """The payload with transfer and content encodings undone. A chunked header over a body
    that is not chunked, or an encoding header over a body stored decoded (known crawler
    quirks), keeps the body as it is. Inflating stops just past `limit` bytes: a compressed
    body of a megabyte can expand to gigabytes (a zip bomb)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            body = dechunk(body)
        except ValueError:
            pass
    encoding = headers.get("content-encoding", "").lower().strip()
    if encoding and body.lstrip()[:1] == b"<":
        return body  # stored decoded with the header left in place (ClueWeb, some crawlers)
    if encoding in ("gzip", "x-gzip", "deflate"):
        for wbits in (47, -15):  # 47: gzip or zlib header; -15: raw deflate
            try:
                return zlib.decompressobj(wbits=wbits).decompress(body, 0 if limit is None else limit + 1)
            except zlib.error:
                continue
        raise ValueError(f"bad_content_encoding:{encoding}")
    if encoding == "br":
        try:
            import brotli

            inflate = brotli.Decompressor().process
            return inflate(body) if limit is None else inflate(body, output_buffer_limit=limit + 1)
        except Exception:
            raise ValueError("bad_content_encoding:br") from None
    if encoding not in ("", "identity", "none", "utf-8"):
        raise ValueError(f"unsupported_content_encoding:{encoding[:30]}")
    return body


def _is_html(identified: str | None, content_type: str | None, body: bytes, config: ReadConfig) -> bool:
    for declared in (identified, content_type):
        if declared and declared.strip():
            return declared.split(";")[0].strip().lower() in config.html_types
    head = body[:HEAD_SNIFF].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head


def declared_charset(body: bytes, content_type: str | None) -> str | None:
    """The charset the HTTP header or a <meta> tag declares, if Python knows it."""
    candidates = []
    if content_type and "charset=" in content_type.lower():
        candidates.append(content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'"))
    match = META_CHARSET_RE.search(body[:4096])
    if match:
        candidates.append(match.group(1).decode("ascii", "ignore").lower())
    for name in candidates:
        try:
            return codecs.lookup(name).name
        except LookupError:
            continue
    return None


def utf8_page(body: bytes, content_type: str | None = None) -> tuple[bytes, int] | None:
    """The page as UTF-8 bytes and its length in characters: UTF-8, else the declared charset,
    else a detected one (charset-normalizer), else None. A UTF-8 body (most of the web) goes on
    as it is, only checked (an ASCII one not even decoded): the extraction worker decodes it,
    so the reader does not re-encode what it has just decoded; only a page in another charset
    is re-encoded, once."""
    if body.isascii():
        return body, len(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = _decode_other(body, content_type)
        return None if text is None else (text.encode("utf-8", "surrogatepass"), len(text))
    if text.startswith("\ufeff"):  # byte order marks go
        text = text.lstrip("\ufeff")
        return text.encode("utf-8"), len(text)
    return body, len(text)


def _decode_other(body: bytes, content_type: str | None) -> str | None:
    """A body that is not UTF-8, decoded from the declared charset or a detected one."""
    charset = declared_charset(body, content_type)
    if charset and charset != "utf-8":
        try:
            return body.decode(charset)
        except (UnicodeDecodeError, LookupError):
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(body[:65536]).best()
    if best is None or best.encoding in (None, "utf_8", charset):
        return None
    try:
        return body.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
