"""The search tool's index: the curated corpus cut into short passages, indexed for BM25.

    curated/{crawl}/clean --split_shard (one task per shard)--> search/{crawl}/part-*.parquet
    passage shards        --build_index (one task)-----------> search/{crawl}/index.*.sqlite
                                                               search/{crawl}/_manifest.json

The engine puts search results into the model's context, which is short (a few hundred
tokens in the tiny preset), so a result must be a passage, not a page: documents are split
into paragraphs and packed into windows of about `passage_chars`; a paragraph longer than
that is cut at sentence ends (and a sentence longer than that, at spaces). Each passage keeps
its page's title and URL, so what the model reads is grounded in a page a user can open.

The passages are a Parquet dataset like any other (inspect them with polars); the SQLite file
beside them is the FTS5 index the client in models/tools.py reads. The manifest is written
last, so the index exists once it is complete; on S3 the client downloads it into a local
cache keyed by the manifest.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
from pydantic import Field

from models import lake, storage
from models.tools import create_index
from tasks.runtime import StageConfig, code_version, config_hash, flow_run_id, lake_task

CODE = ("tasks.search", "models.tools")
KIND = "search-index"
MAX_TITLE_CHARS = 120

PASSAGE_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("title", pa.string()),
        ("passage", pa.int32()),
        ("text", pa.string()),
    ]
)


class SearchConfig(StageConfig):
    passage_chars: int = Field(
        400, ge=80, le=8000, description="Paragraphs are packed into passages of about this many characters"
    )
    batch_docs: int = Field(256, ge=1, description="Documents read and split at a time: a task's memory bound")


# -- splitting documents into passages ---------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def title_of(text: str, url: str) -> tuple[str, str]:
    """(title, body): the first line when it reads like a heading (short, more text after
    it), else a title made from the URL's last path segment (or its host)."""
    first, sep, rest = text.strip().partition("\n")
    first = first.strip()
    if sep and rest.strip() and 0 < len(first) <= MAX_TITLE_CHARS and not first.endswith((".", ",", ":", ";")):
        return first, rest
    parts = urlsplit(url or "")
    segment = next((s for s in reversed(parts.path.split("/")) if s), "")
    segment = re.sub(r"\.\w{2,5}$", "", unquote(segment))  # page.html -> page
    segment = re.sub(r"(?<![^\W_])\d{5,}(?![^\W_])", "", segment)  # article ids: "...-in-delhi-244592"
    title = " ".join(re.sub(r"[-_+]+", " ", segment).split()) or parts.hostname or ""
    return title[:MAX_TITLE_CHARS], text


def _pieces(paragraph: str, limit: int) -> Iterator[str]:
    """A paragraph in pieces of at most `limit` characters: whole sentences where they fit,
    a sentence longer than `limit` at spaces (or anywhere, for a run without spaces)."""
    if len(paragraph) <= limit:
        yield paragraph
        return
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if sentence:
            yield sentence


def passages(text: str, limit: int) -> list[str]:
    """`text` as passages of at most `limit` characters, each a run of whole paragraphs (or
    sentences of a long one) joined by newlines, in order, nothing dropped but whitespace."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        for piece in _pieces(line, limit):
            if current and len(current) + 1 + len(piece) > limit:
                out.append(current)
                current = ""
            current = f"{current}\n{piece}" if current else piece
    if current:
        out.append(current)
    return out


def _passage_batches(shard: str, config: SearchConfig, stats: dict[str, int]) -> Iterator[pa.RecordBatch]:
    for batch in lake.iter_shard(shard, columns=["id", "url", "text"], batch_size=config.batch_docs):
        columns: dict[str, list[Any]] = {name: [] for name in PASSAGE_SCHEMA.names}
        for doc_id, url, text in zip(*(batch.column(c).to_pylist() for c in ("id", "url", "text"))):
            if not text or not text.strip():
                stats["skipped_empty"] += 1
                continue
            title, body = title_of(text, url)
            parts = passages(body, config.passage_chars)
            stats["documents"] += 1
            stats["passages"] += len(parts)
            stats["chars"] += sum(map(len, parts))
            for i, part in enumerate(parts):
                for name, value in zip(PASSAGE_SCHEMA.names, (doc_id, url or "", title, i, part)):
                    columns[name].append(value)
        if columns["text"]:
            yield pa.record_batch(
                [pa.array(columns[n], f.type) for n, f in zip(PASSAGE_SCHEMA.names, PASSAGE_SCHEMA)],
                schema=PASSAGE_SCHEMA,
            )


@lake_task(inputs=("shard",), code=CODE)
def split_shard(shard: str, out: str, part: str, config: SearchConfig) -> dict[str, Any]:
    """Cut one clean shard's documents into passages: shard `part` of the index folder `out`."""
    stats = {"documents": 0, "passages": 0, "chars": 0, "skipped_empty": 0}
    written = lake.write_shard(out, part, _passage_batches(shard, config, stats), schema=PASSAGE_SCHEMA)
    return {"shard": dataclasses.asdict(written), **stats}


# -- the index ---------------------------------------------------------------------------


def _rows(out: str, shards: list[lake.Shard]) -> Iterator[tuple[str, str, str, str]]:
    for shard in shards:
        for batch in lake.iter_shard(lake.join(out, shard.path), columns=["title", "text", "url", "doc_id"]):
            yield from zip(*(batch.column(c).to_pylist() for c in ("title", "text", "url", "doc_id")))


def _upload(local: str, uri: str) -> None:
    """Move a finished file into the lake: a rename on local disk, a (multipart) upload on S3;
    either way readers never see part of it."""
    fs, path = lake.filesystem(uri)
    if lake.is_remote(uri):
        fs.put_file(local, path)
    else:
        os.replace(local, path)


@lake_task(inputs=("clean",), code=CODE)
def build_index(clean: str | list[str], out: str, parts: list[dict[str, Any]], config: SearchConfig) -> dict[str, Any]:
    """Index the passage shards of `out` (made from `clean` by `split_shard`) into
    `out/index.*.sqlite` and commit the folder. Returns the stats written to the manifest."""
    shards = [lake.Shard(**p["shard"]) for p in parts]
    started = time.perf_counter()
    _, root = lake.filesystem(out)
    # On local disk build beside the target (the rename is then atomic); commit clears _tmp.
    remote = lake.is_remote(out)
    tmp_dir = tempfile.mkdtemp(prefix="search-index-") if remote else f"{root}/{lake.TMP_DIR}"
    os.makedirs(tmp_dir, exist_ok=True)
    local = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.sqlite")
    try:
        rows = create_index(local, _rows(out, shards))
        size = os.path.getsize(local)
        # Under a name of its own, which the manifest commits: two runs indexing one crawl at
        # once never pair one's manifest with the other's file.
        index_file = storage.versioned_name("index", ".sqlite", uuid.uuid4().hex)
        _upload(local, lake.join(out, index_file))
    finally:
        if remote:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        elif os.path.exists(local):
            os.remove(local)
    stats = {
        **{k: sum(p[k] for p in parts) for k in ("documents", "passages", "chars", "skipped_empty")},
        "index_bytes": size,
        "index_seconds": round(time.perf_counter() - started, 3),
        "passage_chars": config.passage_chars,
        "index_file": index_file,
    }
    if rows != stats["passages"]:
        raise RuntimeError(f"indexed {rows} passages of {stats['passages']}")
    lake.commit(
        out,
        shards,
        kind=KIND,
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=[clean] if isinstance(clean, str) else clean,
        stats=stats,
    )
    return {"uri": lake.normalize(out), **stats}
