"""The lake: Parquet datasets with manifests under one root URI (local disk or s3://).

A dataset is a folder of Parquet shards plus `_manifest.json`. The manifest is the commit
point: a dataset exists only once its manifest is written, and readers read exactly the
shards it lists. Shards are written atomically (a temporary name then a rename on local
disk; a single PUT or completed multipart upload on S3), so a crash can leave unlisted
files behind but never a half-visible dataset.

Tasks pass dataset URIs around, never data. Everything here goes through fsspec, so the
same code reads and writes `./lake` and `s3://bucket/prefix` (s3fs).

Why here, in models/: this is the storage layer every other layer stands on. The trainer and
its data loader (models/) read lake datasets, and models/ imports neither tasks/ nor Prefect,
so the lake must live at or below models/ for tasks/ and models/ to share one copy of the
shard, manifest and listing rules. It imports nothing from Prefect: who committed a dataset
(the flow run id) is passed in by the caller (tasks.runtime.flow_run_id()). A top-level `lake`
package would collide with the default lake folder, `./lake` in a checkout. The URI primitives
(normalize, join, filesystem, atomic bytes) are in models/storage.py, below this module.

Credentials are never parameters: s3fs takes them from the standard AWS variables or
profile. Only the endpoint and region (not secret) may come from the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from models import storage
from models.storage import MANIFEST, filesystem, is_remote, join, normalize

if TYPE_CHECKING:
    import polars as pl

__all__ = ["MANIFEST", "filesystem", "is_remote", "join", "normalize"]  # re-exported: the lake's URI rules

TMP_DIR = "_tmp"
STALE_TMP_S = 24 * 3600  # a temporary file this old belongs to a writer that died, not one at work
DEFAULT_LAKE = "./lake"


class DatasetNotFound(FileNotFoundError):
    """The URI has no `_manifest.json`: the dataset was never committed."""


def configure_storage(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Point s3:// URIs at an endpoint and region (from the config; not secret).

    They go into the process environment as the standard AWS variables, so worker
    processes started afterwards (a local Dask cluster, subprocesses) see them too.
    """
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Inverse of `filesystem`: a URI for a path that `fs` returned (e.g. from glob)."""
    if _is_local(fs):
        return path
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{path}"


def identity(uri: str) -> str:
    """What a cache key needs to know about an input, without reading its data.

    A dataset is identified by its manifest's fingerprint (shard checksums, kind, config,
    code, parents); a plain file by URI + ETag (S3) or size + mtime (local disk).
    """
    found = read_manifest(uri)
    if found is not None:
        return "dataset:" + found.fingerprint()
    fs, path = filesystem(uri)
    info = fs.info(path)
    tag = info.get("ETag") or info.get("etag") or f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"
    return f"{normalize(uri)}@{str(tag).strip(chr(34))}"


# -- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    path: str  # relative to the dataset folder
    rows: int
    bytes: int
    sha256: str = ""  # of the file's bytes: the shard's content identity


class _HashingWriter:
    """A write-only file that hashes what passes through it on the way to `inner`, so a
    shard's checksum costs no second read (which on S3 would be a second GET)."""

    def __init__(self, inner: Any):
        self.inner, self.sha = inner, hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.inner.write(data)

    def tell(self) -> int:
        return self.inner.tell()

    def flush(self) -> None:
        self.inner.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True  # the owner of `inner` closes it


def write_shard(
    dataset_uri: str,
    name: str,
    data: pa.Table | Iterable[pa.RecordBatch],
    schema: pa.Schema | None = None,
) -> Shard:
    """Write one Parquet shard of a dataset atomically and return what the manifest needs.

    `data` is a table or a stream of record batches (with `schema`), so a task can write a
    shard larger than its memory. The file is named by `name` and its content's checksum
    (`part-00003.<sha16>.parquet`): a version written under another config never replaces
    the file that an earlier manifest or cached task result names, so switching configs back
    and forth can never pair a manifest with another version's bytes. Look shards up by
    name with `shard_uri`.
    """
    fs, root = filesystem(dataset_uri)
    if isinstance(data, pa.Table):
        schema = data.schema
        batches: Iterable[pa.RecordBatch] = data.to_batches()
    else:
        if schema is None:
            raise ValueError("write_shard needs a schema for a stream of batches")
        batches = data
    local = _is_local(fs)
    target = f"{root}/{TMP_DIR}/{name}.{uuid.uuid4().hex}.parquet"
    fs.makedirs(os.path.dirname(target), exist_ok=True)
    rows = 0
    try:
        with fs.open(target, "wb") as f:
            hashing = _HashingWriter(f)
            with pq.ParquetWriter(hashing, schema, compression="zstd") as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
        size = fs.size(target)
        sha = hashing.sha.hexdigest()
        final = f"{root}/{name}.{sha[:16]}.parquet"
        if local:
            fs.makedirs(root, exist_ok=True)
            os.replace(target, final)
        else:  # a server-side copy: the final key appears whole or not at all
            fs.mv(target, final)
    except BaseException:
        if fs.exists(target):
            fs.rm(target)
        raise
    return Shard(path=final.rsplit("/", 1)[-1], rows=rows, bytes=int(size), sha256=sha)


@dataclass
class Manifest:
    kind: str
    shards: list[Shard]
    schema_version: int = 1
    config_hash: str = ""
    code_version: str = ""
    flow_run_id: str | None = None
    parents: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def fingerprint(self) -> str:
        """What the dataset is, without when or by which run it was written: downstream cache
        keys use this, so re-committing identical content changes no key."""
        body = [self.kind, self.schema_version, self.config_hash, self.code_version, sorted(self.parents)]
        body += [(s.path, s.rows, s.sha256 or s.bytes) for s in sorted(self.shards, key=lambda s: s.path)]
        return hashlib.sha256(json.dumps(body, default=str).encode()).hexdigest()

    def to_json(self) -> str:
        body = asdict(self)
        body["rows"] = self.rows
        return json.dumps(body, indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in body.items() if k in known}  # writers may add fields
        body["shards"] = [Shard(**s) for s in body.get("shards", [])]
        return cls(**body)


def commit(
    dataset_uri: str,
    shards: list[Shard],
    *,
    kind: str,
    schema_version: int = 1,
    config_hash: str = "",
    code_version: str = "",
    parents: Iterable[str] = (),
    stats: dict[str, Any] | None = None,
    flow_run_id: str | None = None,
) -> Manifest:
    """Make a dataset visible by writing its manifest (atomically), after its shards.

    Shards are listed in name order so that the manifest does not depend on the order in
    which parallel tasks finished. Committing content identical to the current version
    changes nothing. Stale temporary files (of writers that died) are removed. `flow_run_id`
    records which run made it (tasks.runtime.flow_run_id(); None outside a flow run).
    """
    fs, root = filesystem(dataset_uri)
    for shard in shards:
        if not fs.exists(f"{root}/{shard.path}"):
            raise FileNotFoundError(f"shard {shard.path} of {dataset_uri} was never written")
    manifest = Manifest(
        kind=kind,
        shards=sorted(shards, key=lambda s: s.path),
        schema_version=schema_version,
        config_hash=config_hash,
        code_version=code_version,
        flow_run_id=flow_run_id,
        parents=sorted(normalize(p) for p in parents),
        stats=stats or {},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    previous = read_manifest(dataset_uri)
    if previous is None or previous.fingerprint() != manifest.fingerprint():
        write_text_atomic(f"{normalize(dataset_uri)}/{MANIFEST}", manifest.to_json())
    else:  # the same content again (a cached re-run): keep who made it and when
        manifest = previous
    remove_stale_tmp(fs, root)
    return manifest


def remove_stale_tmp(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Remove the temporary files that writers which died left in a dataset's `_tmp`.

    Only stale ones: another run may be writing a shard of the same dataset right now (two
    pipelines on one crawl), and removing its file would fail that write.
    """
    try:
        leftovers = fs.ls(f"{root}/{TMP_DIR}", detail=True)
    except FileNotFoundError:  # none, or the last one was just moved into place
        return
    cutoff = time.time() - STALE_TMP_S
    for info in leftovers:
        modified = info.get("mtime") or info.get("LastModified") or info.get("created")
        if isinstance(modified, dt.datetime):
            modified = modified.timestamp()
        if modified is not None and float(modified) < cutoff:
            with contextlib.suppress(FileNotFoundError):  # another commit got there first
                fs.rm(info["name"], recursive=True)


def write_text_atomic(uri: str, text: str) -> None:
    """Write a small text file so that readers see the old content or the new, never half."""
    storage.write_bytes(uri, text.encode(), atomic=True)


def write_dataset(
    dataset_uri: str,
    tables: Iterable[pa.Table],
    *,
    kind: str,
    **manifest_fields: Any,
) -> Manifest:
    """Write a small dataset from one process: one shard per table, then the manifest."""
    shards = [write_shard(dataset_uri, f"part-{i:05d}", t) for i, t in enumerate(tables)]
    return commit(dataset_uri, shards, kind=kind, **manifest_fields)


# -- reading -----------------------------------------------------------------------------


def read_manifest(dataset_uri: str) -> Manifest | None:
    fs, root = filesystem(dataset_uri)
    try:
        with fs.open(f"{root}/{MANIFEST}", "r") as f:
            return Manifest.from_json(f.read())
    except (FileNotFoundError, NotADirectoryError):  # no manifest, or `root` is a plain file
        return None


def manifest(dataset_uri: str) -> Manifest:
    found = read_manifest(dataset_uri)
    if found is None:
        raise DatasetNotFound(f"no dataset at {dataset_uri} (no {MANIFEST}: never committed)")
    return found


def exists(dataset_uri: str) -> bool:
    return read_manifest(dataset_uri) is not None


def shard_uris(dataset_uri: str) -> list[str]:
    """The Parquet shards the dataset's manifest lists, in order."""
    return [join(dataset_uri, s.path) for s in manifest(dataset_uri).shards]


_VERSIONED = re.compile(r"^(?P<name>.+)\.[0-9a-f]{16}\.parquet$")


def shard_name(path_or_uri: str) -> str:
    """The name a shard was written under (`part-00003`), from its file name or URI."""
    base = path_or_uri.rstrip("/").rsplit("/", 1)[-1]
    found = _VERSIONED.match(base)
    return found["name"] if found else base.removesuffix(".parquet")


def shard_uri(dataset_uri: str, name: str) -> str:
    """The URI of the committed shard written under `name`."""
    for shard in manifest(dataset_uri).shards:
        if shard_name(shard.path) == name:
            return join(dataset_uri, shard.path)
    raise KeyError(f"{dataset_uri} has no shard named {name!r}")


def read_shard(shard_uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = filesystem(shard_uri)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def iter_batches(
    dataset_uri: str, columns: list[str] | None = None, batch_size: int = 4096
) -> Iterator[pa.RecordBatch]:
    """Stream a dataset shard by shard; memory is bounded by `batch_size`, not the dataset."""
    for uri in shard_uris(dataset_uri):
        yield from iter_shard(uri, columns, batch_size)


def iter_shard(shard_uri: str, columns: list[str] | None = None, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    """Stream one shard in record batches of at most `batch_size` rows."""
    fs, path = filesystem(shard_uri)
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


def scan(dataset_uri: str) -> pl.LazyFrame:
    """A lazy polars frame over the committed shards (through fsspec, so s3fs on S3)."""
    import polars as pl  # here: the trainer's processes, which read shards, need no polars
    import pyarrow.dataset as pads
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, _ = filesystem(dataset_uri)
    paths = [filesystem(u)[1] for u in shard_uris(dataset_uri)]
    if not paths:
        raise DatasetNotFound(f"{dataset_uri} has no shards")
    ds = pads.dataset(paths, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    return pl.scan_pyarrow_dataset(ds)


def committed_file(folder: str, stat: str, default: str) -> str:
    """The URI of the file a folder's manifest commits under `stats[stat]` (a versioned name,
    models.storage.versioned_name), else `default` in the folder (written before files were
    versioned, or by hand)."""
    found = read_manifest(folder)
    return join(folder, (found.stats.get(stat) if found else None) or default)


def list_datasets(prefix_uri: str) -> list[str]:
    """URIs of every committed dataset under a prefix (found by their manifests)."""
    fs, root = filesystem(prefix_uri)
    found = fs.glob(f"{root}/**/{MANIFEST}")
    return sorted(to_uri(fs, p.rsplit("/", 1)[0]) for p in found)
