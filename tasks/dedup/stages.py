"""The dedup stages as Prefect tasks over Parquet datasets in the lake.

Datasets, all under `dedup/{crawl}/` (the index under `dedup/index`):

- `signatures` (stage 1, one task per input shard, same shard names): id, crawl, shard,
  date, words, shingles, exact_hi/exact_lo (128-bit hash of the normalised text), and
  band_00..band_NN (one 64-bit hash per band; null for documents shorter than a shingle).
- `exact` (one task per hash-range split): every member of every group of documents with the
  same normalised text, with the group's kept document.
- `pairs` (stage 2, one task per band x split): candidate pairs a, b (ids) sharing a band.
- `clusters` (stage 3, one task): every member of every connected component of the pairs,
  with the component's kept document.
- `remove` (stage 4, one task per input shard, same shard names): id, step, reason, cluster,
  kept_id of this crawl's documents to drop. The curate flow anti-joins each of its shards
  with the shard of the same name (tasks/dedup/apply.py).

No task holds the corpus: stage 1 streams its shard in batches; stage 2 reads two columns
(id and one band) lazily, narrowed to one slice of the hash range when `splits` > 1; stage 3
holds only the documents that have a duplicate; stage 4 reads one shard's rows.

Scopes decide which signatures are candidates (`sources`): this crawl's (crawl), every
crawl's in the lake (lake), or this crawl's plus the index of documents kept by earlier runs
(index). Index documents always win a cluster; only this crawl's documents are removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks import lake
from tasks.dedup.clusters import KEEP_ORDER, MEMBER_COLUMNS, choose_kept, components, duplicate_edges, with_cluster_ids
from tasks.dedup.minhash import Signer, band_hashes, exact_hash, shingle
from tasks.runtime import lake_task

CODE = ("tasks.dedup", "tasks.lake")
EXACT_STEP, MINHASH_STEP = "dedup_exact", "dedup_minhash"


def band_columns(bands: int) -> list[str]:
    return [f"band_{i:02d}" for i in range(bands)]


def signature_schema(bands: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("crawl", pa.string()),
            ("shard", pa.string()),
            ("date", pa.string()),
            ("words", pa.int32()),
            ("shingles", pa.int32()),
            ("exact_hi", pa.uint64()),
            ("exact_lo", pa.uint64()),
        ]
        + [(name, pa.uint64()) for name in band_columns(bands)]
    )


CLUSTER_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("crawl", pa.string()),
        ("shard", pa.string()),
        ("date", pa.string()),
        ("from_index", pa.bool_()),
        ("cluster", pa.int64()),
        ("kept_id", pa.string()),
        ("kept_crawl", pa.string()),
        ("size", pa.int32()),
        ("step", pa.string()),
    ]
)
PAIR_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("band", pa.int16())])
REMOVE_SCHEMA = pa.schema(
    [("id", pa.string()), ("step", pa.string()), ("reason", pa.string()), ("cluster", pa.int64()), ("kept_id", pa.string())]
)


def _table(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return frame.select(schema.names).to_arrow().cast(schema)


def _written(written: lake.Shard, **stats: Any) -> dict[str, Any]:
    return {"path": written.path, "rows": written.rows, "bytes": written.bytes, "sha256": written.sha256, **stats}


# -- stage 1: signatures -------------------------------------------------------------------


def sign_batches(
    batches: Iterable[pa.RecordBatch], crawl: str, shard: str, params: dict[str, int], counts: dict[str, int]
) -> Iterator[pa.RecordBatch]:
    """Signature rows for batches of documents (id, date, text); `counts` gets docs and
    too_short (documents with fewer words than a shingle: exact dedup only)."""
    bands, rows = params["bands"], params["rows"]
    signer = Signer(num_perm=bands * rows, seed=params["seed"])
    schema = signature_schema(bands)
    for batch in batches:
        texts = pl.Series(batch.column("text"))
        shingled = shingle(texts, params["n_grams"])
        band = band_hashes(signer.sign(shingled), bands, rows)
        exact = np.frombuffer(b"".join(exact_hash(t) for t in shingled.texts), dtype=">u8").reshape(-1, 2)
        empty = shingled.counts == 0
        n = batch.num_rows
        counts["docs"] = counts.get("docs", 0) + n
        counts["too_short"] = counts.get("too_short", 0) + int(empty.sum())
        columns = [
            batch.column("id"),
            pa.array([crawl] * n, pa.string()),
            pa.array([shard] * n, pa.string()),
            batch.column("date").cast(pa.string()),
            pa.array(shingled.words, pa.int32()),
            pa.array(shingled.counts, pa.int32()),
            pa.array(exact[:, 0].astype(np.uint64), pa.uint64()),
            pa.array(exact[:, 1].astype(np.uint64), pa.uint64()),
        ] + [pa.array(band[:, i], pa.uint64(), mask=empty) for i in range(bands)]
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


@lake_task(inputs=("shard_uri",), code=CODE)
def sign_shard(shard_uri: str, out_uri: str, crawl: str, params: dict[str, int], batch_size: int = 1024) -> dict[str, Any]:
    """Stage 1: one input shard's signatures, written as the shard of the same name."""
    shard = lake.shard_name(shard_uri)
    counts: dict[str, int] = {}
    batches = lake.iter_shard(shard_uri, ["id", "date", "text"], batch_size)
    written = lake.write_shard(out_uri, shard, sign_batches(batches, crawl, shard, params, counts), signature_schema(params["bands"]))
    return _written(written, shard=shard, docs=counts.get("docs", 0), too_short=counts.get("too_short", 0))


# -- candidates: which signatures a scope compares -----------------------------------------


def candidates(sources: list[str], index_uri: str | None, crawl: str, columns: list[str]) -> pl.LazyFrame:
    """The candidate documents' `columns` + from_index, lazily, over every source's shards.
    Index rows of this crawl itself are left out, so re-running a crawl never finds it
    duplicating its own earlier run."""
    frames = [lake.scan(uri).select(columns).with_columns(pl.lit(False).alias("from_index")) for uri in sources]
    if index_uri:
        index = lake.scan(index_uri).filter(pl.col("crawl") != crawl).select(columns)
        frames.append(index.with_columns(pl.lit(True).alias("from_index")))
    return pl.concat(frames, how="vertical")


def in_split(column: str, split: int, splits: int) -> pl.Expr:
    """This task's slice of the (uniform) hash range."""
    return pl.col(column) % splits == split if splits > 1 else pl.lit(True)


# -- exact duplicates ----------------------------------------------------------------------


@lake_task(inputs=("sources", "index_uri"), code=CODE)
def exact_groups(sources: list[str], index_uri: str | None, crawl: str, split: int, splits: int, out_uri: str) -> dict[str, Any]:
    """Groups of documents with the same normalised text (in this split of the hash range),
    each member with the group's kept document."""
    key = ["exact_hi", "exact_lo"]
    frame = candidates(sources, index_uri, crawl, MEMBER_COLUMNS + key).filter(in_split("exact_lo", split, splits))
    members = (
        frame.with_columns(pl.len().over(key).alias("n"), (~pl.col("from_index")).any().over(key).alias("has_new"))
        .filter((pl.col("n") > 1) & pl.col("has_new"))
        .collect()
    )
    table = with_cluster_ids(choose_kept(members, key), EXACT_STEP).with_columns(pl.lit(EXACT_STEP).alias("step"))
    written = lake.write_shard(out_uri, f"split-{split:03d}", _table(table, CLUSTER_SCHEMA))
    return _written(written, removed=int((table["id"] != table["kept_id"]).sum()))


def removed_ids(uri: str) -> pl.LazyFrame:
    return lake.scan(uri).filter(pl.col("id") != pl.col("kept_id")).select("id")


# -- stage 2: buckets ----------------------------------------------------------------------


@lake_task(inputs=("sources", "index_uri", "exact_uri"), code=CODE)
def band_pairs(
    sources: list[str], index_uri: str | None, exact_uri: str | None, crawl: str, band: int, split: int, splits: int, out_uri: str
) -> dict[str, Any]:
    """Stage 2: candidate pairs of one band (in one split of its hash range): documents whose
    band hashes are equal, i.e. whose `rows` minima in this band all agree."""
    column = band_columns(band + 1)[band]
    frame = candidates(sources, index_uri, crawl, ["id", column]).filter(
        pl.col(column).is_not_null() & in_split(column, split, splits)
    )
    if exact_uri:  # exact duplicates are settled already: their kept copy stands for them
        frame = frame.join(removed_ids(exact_uri), on="id", how="anti")
    pairs = duplicate_edges(frame, column).with_columns(pl.lit(band, dtype=pl.Int16).alias("band")).collect()
    written = lake.write_shard(out_uri, f"band-{band:02d}-split-{split:03d}", _table(pairs.sort("a", "b"), PAIR_SCHEMA))
    return _written(written)


# -- stage 3: clusters ---------------------------------------------------------------------


@lake_task(inputs=("pairs_uri", "sources", "index_uri"), code=CODE)
def cluster_pairs(pairs_uri: str, sources: list[str], index_uri: str | None, crawl: str, out_uri: str) -> dict[str, Any]:
    """Stage 3: connected components of the candidate pairs (union-find), each member with
    its component's kept document."""
    pairs = lake.scan(pairs_uri).select("a", "b").unique().collect()
    member_ids = components(pairs)
    columns, descending = KEEP_ORDER
    members = (
        candidates(sources, index_uri, crawl, MEMBER_COLUMNS)
        .join(member_ids.lazy(), on="id", how="inner")
        .sort(columns, descending=descending, nulls_last=True)
        .unique(subset="id", keep="first", maintain_order=True)  # an id listed by two sources counts once
        .collect()
    )
    table = with_cluster_ids(choose_kept(members, "component"), MINHASH_STEP).with_columns(pl.lit(MINHASH_STEP).alias("step"))
    written = lake.write_shard(out_uri, "part-00000", _table(table, CLUSTER_SCHEMA))
    return _written(written, pairs=pairs.height, removed=int((table["id"] != table["kept_id"]).sum()))


# -- stage 4: what to remove ---------------------------------------------------------------


def _reasons(frame: pl.LazyFrame, what: str, crawl: str) -> pl.LazyFrame:
    elsewhere = pl.when(pl.col("kept_crawl") != crawl).then(pl.lit(" in crawl ") + pl.col("kept_crawl")).otherwise(pl.lit(""))
    return frame.with_columns((pl.lit(f"{what} of ") + pl.col("kept_id") + elsewhere).alias("reason"))


@lake_task(inputs=("exact_uri", "clusters_uri", "signatures_uri"), code=CODE)
def shard_removals(
    shard: str, crawl: str, exact_uri: str | None, clusters_uri: str, signatures_uri: str, out_uri: str, index_uri: str | None = None
) -> dict[str, Any]:
    """Stage 4: this crawl's documents of one shard that dedup removes, with why; with
    `index_uri`, the shard's kept documents' signatures are also written into the index
    (as shard `{crawl}--{shard}`, replaced when the crawl is deduplicated again)."""
    mine = (pl.col("crawl") == crawl) & (pl.col("shard") == shard) & (pl.col("id") != pl.col("kept_id"))
    parts = [_reasons(lake.scan(clusters_uri).filter(mine), "near-duplicate", crawl)]
    if exact_uri:
        parts.insert(0, _reasons(lake.scan(exact_uri).filter(mine), "exact duplicate", crawl))
    removed = pl.concat(parts).select(REMOVE_SCHEMA.names).collect().sort("id")
    written = lake.write_shard(out_uri, shard, _table(removed, REMOVE_SCHEMA))
    stats = _written(written, shard=shard, exact=int((removed["step"] == EXACT_STEP).sum()), minhash=int((removed["step"] == MINHASH_STEP).sum()))
    if index_uri:
        signatures = lake.read_shard(lake.shard_uri(signatures_uri, shard))
        kept = signatures.filter(pc.invert(pc.is_in(signatures["id"], value_set=pa.array(removed["id"].to_list(), pa.string()))))
        stats["indexed"] = _written(lake.write_shard(index_uri, f"{crawl}--{shard}", kept))
    return stats


# -- the index of earlier crawls -----------------------------------------------------------


def check_compatible(uri: str, params: dict[str, int]) -> None:
    """Signatures compare only under the same shingling, bands, rows and seed."""
    found = lake.manifest(uri).stats.get("signature")
    if found != params:
        raise ValueError(f"{uri} was signed with {found}, this run uses {params}: re-sign it or change the dedup config")


def lake_sources(root: str, params: dict[str, int]) -> list[str]:
    """Every crawl's committed signatures in the lake (scope `lake`)."""
    found = [uri for uri in lake.list_datasets(lake.join(root, "dedup")) if uri.endswith("/signatures")]
    for uri in found:
        check_compatible(uri, params)
    return found


def commit_index(index_uri: str, crawl: str, shards: list[dict[str, Any]], params: dict[str, int], **fields: Any) -> lake.Manifest:
    """Add this crawl's kept documents to the index: its earlier shards (if any) are replaced,
    every other crawl's are kept."""
    previous = lake.read_manifest(index_uri)
    keep = [s for s in (previous.shards if previous else []) if not s.path.startswith(f"{crawl}--")]
    new = [lake.Shard(path=s["path"], rows=s["rows"], bytes=s["bytes"], sha256=s["sha256"]) for s in shards]
    crawls = sorted({s.path.split("--", 1)[0] for s in keep + new})
    return lake.commit(
        index_uri, keep + new, kind="dedup-index", stats={"signature": params, "crawls": crawls}, **fields
    )
