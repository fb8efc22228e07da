"""A corpus of hostile WARC input, generated: what a crawl of the open web eventually contains.

`write_corpus(folder, neighbours)` writes one WARC file per case below. Each file holds two
ordinary pages (`neighbours`, real HTML) and the hostile record between them (after them for
the cases that break the file itself), so a check can see that the hostile record is counted
with a reason *and* takes nothing else down with it.

    truncated_gzip       the file ends in the middle of a gzip member
    length_too_long      Content-Length claims 10,000 more bytes than the record has
    length_too_short     Content-Length claims 100 fewer bytes than the record has
    invalid_utf8         declared UTF-8, with byte sequences that are not
    binary_as_html       random bytes served as text/html
    page_50mb            a 50 MB HTML page
    nested_100k          HTML elements nested 100,000 levels deep
    gzip_bomb            Content-Encoding: gzip, a 1.6 MB body that inflates to 1.6 GB of zeros
    brotli_bomb          Content-Encoding: br, a 0.4 MB body that inflates to 2 GB of zeros
    nul_and_controls     NUL and other C0 control characters all through the text
    line_10mb            a single line of 10 MB
    line_just_under      a single line just under the reader's size limit (so it reaches
                         extraction and the filters)

Nothing here is random at run time: a case's bytes depend on its name alone.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.curate.config import ReadConfig

HOSTILE = "http://hostile.example/"
BOMB_BYTES = 1600 * 2**20  # what the gzip bomb inflates to
_LIMIT = ReadConfig().max_html_bytes


def url(case: str) -> str:
    """The URL of a case's hostile record."""
    return HOSTILE + case


def record(
    url: str, body: bytes, headers: str = "Content-Type: text/html; charset=utf-8", declared_delta: int = 0
) -> bytes:
    """One WARC response record (HTTP headers + body) with a correct SHA-1 block digest,
    unless `declared_delta` makes its Content-Length lie."""
    http = f"HTTP/1.1 200 OK\r\n{headers}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    digest = base64.b32encode(hashlib.sha1(http).digest()).decode()
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\nWARC-Target-URI: {url}\r\n"
        f"WARC-Date: 2024-05-01T00:00:00Z\r\nWARC-Block-Digest: sha1:{digest}\r\n"
        "Content-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {len(http) + declared_delta}\r\n\r\n"
    ).encode()
    return head + http + b"\r\n\r\n"


def member(data: bytes) -> bytes:
    """A record as its own gzip member, as Common Crawl writes them."""
    return gzip.compress(data, compresslevel=1, mtime=0)


def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    """A valid gzip stream of `size` zero bytes, built without compressing them: one deflate
    block of 1 MiB of zeros, flushed so that it can be repeated, then the trailer."""
    chunk = 1 << 20
    assert size % chunk == 0
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = head.compress(b"\0" * chunk) + head.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail.compress(b"")
    end = tail.flush(zlib.Z_FINISH)
    crc = 0
    zeros = b"\0" * chunk
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (size // chunk) + end + crc.to_bytes(4, "little") + (size % 2**32).to_bytes(4, "little")


def brotli_bomb(size: int = 2 * 2**30) -> bytes:
    """A brotli stream of `size` zero bytes (brotli packs 2 GB of zeros into 0.4 MB)."""
    import brotli

    chunk, packer = b"\0" * (64 << 20), brotli.Compressor(quality=1)
    return b"".join([packer.process(chunk) for _ in range(size // len(chunk))] + [packer.finish()])


def _html(text: str) -> bytes:
    return f"<!doctype html><html><head><title>t</title></head><body><article><p>{text}</p></article></body></html>".encode()


def _cases(text: str) -> dict[str, Callable[[], tuple[bytes, bool]]]:
    """name -> builder of (the hostile record's bytes, already gzipped?); `text` is an
    ordinary article, the content of the cases that carry text."""
    rng = random.Random(0)
    paragraph = "</p><p>".join(text.split("\n"))
    controls = "".join(
        w + rng.choice([" ", " ", " \x00", "\x01 ", " \x07", "\x1b ", " \x0b", "\x7f "]) for w in text.split(" ")
    )

    def long_line(size: int) -> bytes:
        words = (" ".join(text.split()) + " ").encode()  # the article on one line, over and over
        return _html((words * (size // len(words) + 1))[:size].decode())

    return {
        "truncated_gzip": lambda: (member(record(url("truncated_gzip"), _html(paragraph * 20)))[:-500], True),
        "length_too_long": lambda: (record(url("length_too_long"), _html(paragraph), declared_delta=10_000), False),
        "length_too_short": lambda: (record(url("length_too_short"), _html(paragraph), declared_delta=-100), False),
        "invalid_utf8": lambda: (
            record(url("invalid_utf8"), _html(paragraph).replace(b". ", b". \xc3\x28\xa0\xa1\xe2\x28\xf0\x28\x8c ")),
            False,
        ),
        "binary_as_html": lambda: (record(url("binary_as_html"), random.Random(1).randbytes(300_000)), False),
        "page_50mb": lambda: (
            record(url("page_50mb"), _html((paragraph + " ") * (50 * 2**20 // (len(paragraph) + 1)))),
            False,
        ),
        "nested_100k": lambda: (
            record(
                url("nested_100k"),
                b"<html><body>" + b"<div>" * 100_000 + paragraph.encode() + b"</div>" * 100_000 + b"</body></html>",
            ),
            False,
        ),
        "gzip_bomb": lambda: (
            record(url("gzip_bomb"), gzip_bomb(), headers="Content-Type: text/html\r\nContent-Encoding: gzip"),
            False,
        ),
        "brotli_bomb": lambda: (
            record(url("brotli_bomb"), brotli_bomb(), headers="Content-Type: text/html\r\nContent-Encoding: br"),
            False,
        ),
        "nul_and_controls": lambda: (record(url("nul_and_controls"), _html(controls)), False),
        "line_10mb": lambda: (record(url("line_10mb"), long_line(10 * 2**20)), False),
        "line_just_under": lambda: (record(url("line_just_under"), long_line(_LIMIT - 200)), False),
    }


CASES = tuple(_cases(""))
BREAKS_THE_FILE = ("truncated_gzip",)  # the hostile record goes last: nothing can follow it


def write_corpus(
    folder: str | Path, neighbours: list[tuple[str, bytes]], text: str, cases: tuple[str, ...] = CASES
) -> dict[str, str]:
    """Write `{folder}/{case}.warc.gz` for each case, with the two `neighbours` (url, html)
    around the hostile record, and `{folder}/control.warc.gz` with the neighbours alone;
    `text` (an article) is what the hostile pages say. Returns case -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = [member(record(url, html)) for url, html in neighbours]
    builders = _cases(text)
    out = {}
    for name in ("control", *cases):
        path = folder / f"{name}.warc.gz"
        if name == "control":
            data = b"".join(good)
        else:
            raw, packed = builders[name]()
            bad = raw if packed else member(raw)
            data = b"".join(good) + bad if name in BREAKS_THE_FILE else good[0] + bad + good[1]
        path.write_bytes(data)
        out[name] = str(path)
    return out


def real_pages(shared_data: str | Path) -> tuple[list[tuple[str, bytes]], str]:
    """Two real article pages (url, HTML) from the extraction benchmark, to sit beside each
    case, and a third article's text, for the hostile pages to say."""
    import json

    folder = Path(shared_data) / "extraction-benchmark"
    truth = json.loads((folder / "ground-truth.json").read_text())
    keys = sorted(truth)[:3]
    pages = [(truth[k]["url"], gzip.decompress((folder / "html" / f"{k}.html.gz").read_bytes())) for k in keys[:2]]
    return pages, truth[keys[2]]["articleBody"]


def curate_corpus(folder: str, out: str) -> dict[str, Any]:
    """Each corpus file through the curate task's logic (`curate_warc_fn`, default config):
    case -> documents in, and url -> [step, reason] of every document ([None, None]: kept);
    and the extractor worker's peak memory (VmHWM, read after each file; a worker killed
    for a timeout inside a file is not seen). Run by tests/support/stress.py's `peak_rss` in a fresh
    process, which adds that process's own peak."""
    from models import lake
    from tasks.curate.config import CurateConfig
    from tasks.curate.extract import extractor_for
    from tasks.curate.stage import curate_warc_fn
    from tests.support.stress import vm_hwm_mb

    config = CurateConfig()
    worker = extractor_for(config.extract)
    cases, worker_peak = {}, 0.0
    for path in sorted(Path(folder).glob("*.warc.gz")):
        case = path.name.removesuffix(".warc.gz")
        done = curate_warc_fn(str(path), f"{out}/filtered", f"{out}/removed", "hostile", config)
        kept = lake.read_shard(f"{out}/filtered/{done['filtered']['path']}").to_pylist()
        removed = lake.read_shard(f"{out}/removed/{done['removed']['path']}").to_pylist()
        outcomes = {r["url"]: [None, None] for r in kept} | {r["url"]: [r["step"], r["reason"]] for r in removed}
        if len(outcomes) != len(kept) + len(removed):
            raise AssertionError(f"{case}: a URL appears twice")
        cases[case] = {"docs_in": done["docs_in"], "outcomes": outcomes}
        if worker._proc is not None and worker._proc.poll() is None:
            worker_peak = max(worker_peak, vm_hwm_mb(worker._proc.pid))
    worker.close()
    return {"cases": cases, "extractor_peak_mb": worker_peak, "extractor_restarts": worker.restarts}
