"""The dedup stages as Prefect tasks over Parquet datasets in the lake.

Datasets, all under `dedup/{crawl}/` (the index under `dedup/index/{crawl}`):

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

No task holds the corpus: stage 1 streams its shard in batches; the exact and bucket stages
hold one 64-bit hash per document of their slice of the hash range (`splits` slices, sized
by `DedupConfig.splits_for`) and the other columns only of the documents that share one;
stage 3 holds only the documents that have a duplicate; stage 4 reads one shard's rows.

Scopes decide which signatures are candidates (`sources`): this crawl's (crawl), every
crawl's in the lake (lake), or this crawl's plus the index of documents kept by earlier runs
(index: every other crawl's part `dedup/index/{crawl}`). Index documents always win a
cluster; only this crawl's documents are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from models import lake
from tasks.dedup.clusters import KEEP_ORDER, MEMBER_COLUMNS, choose_kept, components, duplicate_edges, with_cluster_ids
from tasks.dedup.minhash import Signer, band_hashes, exact_hash, shingle
from tasks.layout import Layout
from tasks.runtime import lake_task

CODE = ("tasks.dedup", "models.lake")
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
    [
        ("id", pa.string()),
        ("step", pa.string()),
        ("reason", pa.string()),
        ("cluster", pa.int64()),
        ("kept_id", pa.string()),
    ]
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
def sign_shard(
    shard_uri: str, out_uri: str, crawl: str, params: dict[str, int], batch_size: int = 1024
) -> dict[str, Any]:
    """Stage 1: one input shard's signatures, written as the shard of the same name."""
    shard = lake.shard_name(shard_uri)
    counts: dict[str, int] = {}
    batches = lake.iter_shard(shard_uri, ["id", "date", "text"], batch_size)
    written = lake.write_shard(
        out_uri, shard, sign_batches(batches, crawl, shard, params, counts), signature_schema(params["bands"])
    )
    return _written(written, shard=shard, docs=counts.get("docs", 0), too_short=counts.get("too_short", 0))


# -- what a scope compares, read in two passes --------------------------------------------
#
# A slice of one hash column over the whole corpus is the largest thing the exact and bucket
# stages look at. Holding it as strings and grouping in a dataframe made their memory grow with
# the corpus (~450 MB over the imports at 1M documents). Instead, pass 1 keeps only the hashes
# of the slice (8 bytes a document, sorted in numpy) to find which keys are shared; pass 2
# streams the shards again and keeps the other columns only of the documents holding such a
# key, a small fraction. Both passes read a batch at a time, so a task holds ~16 bytes per
# document of its slice, and `DedupConfig.splits_for` sizes the slices from a row budget.

READ_BATCH = 65_536  # rows per read: one shard's column at the usual shard sizes


def compared(sources: list[str], index_uris: list[str]) -> list[tuple[str, bool]]:
    """The datasets a scope compares, each with whether it is a part of the index."""
    return [(uri, False) for uri in sources] + [(uri, True) for uri in index_uris]


def _keys(batch: pa.RecordBatch, column: str, split: int, splits: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch's hash `column` as uint64, and which rows have one in this task's slice of the
    (uniform) hash range."""
    values = batch.column(column)
    mask = pc.is_valid(values).to_numpy(zero_copy_only=False)
    values = values.fill_null(0).to_numpy()
    if splits > 1:
        mask &= values % np.uint64(splits) == split
    return values, mask


def _in_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which `values` are among the sorted `keys`."""
    if not len(keys):
        return np.zeros(len(values), dtype=bool)
    return keys[np.searchsorted(keys, values).clip(max=len(keys) - 1)] == values


def shared_keys(sources: list[str], index_uris: list[str], column: str, split: int, splits: int) -> np.ndarray:
    """Pass 1: the sorted values of hash `column` (in this slice) that a new document shares
    with another document. Only the new documents' hashes are held; the index streams past
    them, so an index of many crawls costs reading, not memory. Keys shared only by index
    documents are left out: those were settled when they were indexed."""
    chunks = []
    for uri in sources:
        for batch in lake.iter_batches(uri, [column], READ_BATCH):
            values, mask = _keys(batch, column, split, splits)
            chunks.append(values[mask])
    new = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    del chunks
    new.sort()
    shared = [new[1:][new[1:] == new[:-1]]]
    for uri in index_uris:
        for batch in lake.iter_batches(uri, [column], READ_BATCH):
            values, mask = _keys(batch, column, split, splits)
            values = values[mask]
            shared.append(values[_in_sorted(values, new)])
    return np.unique(np.concatenate(shared))


def select_rows(
    parts: list[tuple[str, bool]], columns: list[str], keep: Callable[[pa.RecordBatch], np.ndarray]
) -> pl.DataFrame:
    """`columns` + from_index of the rows that `keep` marks, streaming every part a batch at
    a time: memory holds one batch and the rows kept."""
    hashes = ("exact_", "band_")
    frames = [
        pl.DataFrame(
            schema={c: pl.UInt64 if c.startswith(hashes) else pl.String for c in columns} | {"from_index": pl.Boolean}
        )
    ]
    for uri, from_index in parts:
        for batch in lake.iter_batches(uri, columns, READ_BATCH):
            mask = keep(batch)
            if mask.any():
                frames.append(
                    pl.from_arrow(batch.filter(pa.array(mask))).with_columns(pl.lit(from_index).alias("from_index"))
                )
    return pl.concat(frames, how="vertical_relaxed")


def rows_sharing_keys(
    sources: list[str], index_uris: list[str], column: str, split: int, splits: int, columns: list[str]
) -> pl.DataFrame:
    """Pass 2: `columns` (+ `column`, from_index) of the documents whose hash `column` one
    other document shares, as pass 1 found them."""
    keys = shared_keys(sources, index_uris, column, split, splits)

    def keep(batch: pa.RecordBatch) -> np.ndarray:
        values, mask = _keys(batch, column, split, splits)
        return mask & _in_sorted(values, keys)

    return select_rows(compared(sources, index_uris), list(dict.fromkeys(columns + [column])), keep)


def _id_in(ids: pa.Array) -> Callable[[pa.RecordBatch], np.ndarray]:
    return lambda batch: pc.is_in(batch.column("id"), value_set=ids).to_numpy(zero_copy_only=False)


# -- exact duplicates ----------------------------------------------------------------------


@lake_task(inputs=("sources", "index_uris"), code=CODE)
def exact_groups(sources: list[str], index_uris: list[str], split: int, splits: int, out_uri: str) -> dict[str, Any]:
    """Groups of documents with the same normalised text (in this split of the hash range),
    each member with the group's kept document."""
    key = ["exact_hi", "exact_lo"]
    # Pass 1 on the low 64 bits: a superset of the 128-bit groups, narrowed to them here.
    rows = rows_sharing_keys(sources, index_uris, "exact_lo", split, splits, MEMBER_COLUMNS + key)
    members = rows.filter((pl.len().over(key) > 1) & (~pl.col("from_index")).any().over(key))
    table = with_cluster_ids(choose_kept(members, key), EXACT_STEP).with_columns(pl.lit(EXACT_STEP).alias("step"))
    written = lake.write_shard(out_uri, f"split-{split:03d}", _table(table, CLUSTER_SCHEMA))
    return _written(written, removed=int((table["id"] != table["kept_id"]).sum()))


# -- stage 2: buckets ----------------------------------------------------------------------


@lake_task(inputs=("sources", "index_uris", "exact_uri"), code=CODE)
def band_pairs(
    sources: list[str], index_uris: list[str], exact_uri: str | None, band: int, split: int, splits: int, out_uri: str
) -> dict[str, Any]:
    """Stage 2: candidate pairs of one band (in one split of its hash range): documents whose
    band hashes are equal, i.e. whose `rows` minima in this band all agree."""
    column = band_columns(band + 1)[band]
    frame = rows_sharing_keys(sources, index_uris, column, split, splits, ["id"])
    if exact_uri:  # exact duplicates are settled already: their kept copy stands for them
        settled = select_rows([(exact_uri, False)], ["id", "kept_id"], _id_in(frame["id"].to_arrow()))
        frame = frame.join(settled.filter(pl.col("id") != pl.col("kept_id")).select("id"), on="id", how="anti")
    pairs = duplicate_edges(frame.lazy(), column).with_columns(pl.lit(band, dtype=pl.Int16).alias("band")).collect()
    written = lake.write_shard(out_uri, f"band-{band:02d}-split-{split:03d}", _table(pairs.sort("a", "b"), PAIR_SCHEMA))
    return _written(written)


# -- stage 3: clusters ---------------------------------------------------------------------


@lake_task(inputs=("pairs_uri", "sources", "index_uris"), code=CODE)
def cluster_pairs(pairs_uri: str, sources: list[str], index_uris: list[str], out_uri: str) -> dict[str, Any]:
    """Stage 3: connected components of the candidate pairs (union-find), each member with
    its component's kept document. It holds the pairs and their documents (the ones that have
    a duplicate), never the corpus: the members' columns are picked from a stream of shards."""
    pairs = lake.scan(pairs_uri).select("a", "b").unique().collect()
    member_ids = components(pairs)
    columns, descending = KEEP_ORDER
    members = (
        select_rows(compared(sources, index_uris), MEMBER_COLUMNS, _id_in(member_ids["id"].to_arrow()))
        .join(member_ids, on="id", how="inner")
        .sort(columns, descending=descending, nulls_last=True)
        .unique(subset="id", keep="first", maintain_order=True)  # an id listed by two sources counts once
    )
    table = with_cluster_ids(choose_kept(members, "component"), MINHASH_STEP).with_columns(
        pl.lit(MINHASH_STEP).alias("step")
    )
    written = lake.write_shard(out_uri, "part-00000", _table(table, CLUSTER_SCHEMA))
    return _written(written, pairs=pairs.height, removed=int((table["id"] != table["kept_id"]).sum()))


# -- stage 4: what to remove ---------------------------------------------------------------


def _reasons(frame: pl.LazyFrame, what: str, crawl: str) -> pl.LazyFrame:
    elsewhere = (
        pl.when(pl.col("kept_crawl") != crawl).then(pl.lit(" in crawl ") + pl.col("kept_crawl")).otherwise(pl.lit(""))
    )
    return frame.with_columns((pl.lit(f"{what} of ") + pl.col("kept_id") + elsewhere).alias("reason"))


@lake_task(inputs=("exact_uri", "clusters_uri", "signatures_uri"), code=CODE)
def shard_removals(
    shard: str,
    crawl: str,
    exact_uri: str | None,
    clusters_uri: str,
    signatures_uri: str,
    out_uri: str,
    index_uri: str | None = None,
) -> dict[str, Any]:
    """Stage 4: this crawl's documents of one shard that dedup removes, with why; with
    `index_uri` (this crawl's part of the index), the shard's kept documents' signatures are
    also written there, as the shard of the same name."""
    mine = (pl.col("crawl") == crawl) & (pl.col("shard") == shard) & (pl.col("id") != pl.col("kept_id"))
    parts = [_reasons(lake.scan(clusters_uri).filter(mine), "near-duplicate", crawl)]
    if exact_uri:
        parts.insert(0, _reasons(lake.scan(exact_uri).filter(mine), "exact duplicate", crawl))
    removed = pl.concat(parts).select(REMOVE_SCHEMA.names).collect().sort("id")
    written = lake.write_shard(out_uri, shard, _table(removed, REMOVE_SCHEMA))
    stats = _written(
        written,
        shard=shard,
        exact=int((removed["step"] == EXACT_STEP).sum()),
        minhash=int((removed["step"] == MINHASH_STEP).sum()),
    )
    if index_uri:
        signatures = lake.read_shard(lake.shard_uri(signatures_uri, shard))
        kept = signatures.filter(
            pc.invert(pc.is_in(signatures["id"], value_set=pa.array(removed["id"].to_list(), pa.string())))
        )
        stats["indexed"] = _written(lake.write_shard(index_uri, shard, kept))
    return stats


# -- the index of earlier crawls -----------------------------------------------------------
#
# The index is one dataset per crawl, `dedup/index/{crawl}`, each with its own manifest, and
# readers take the union of them all. A crawl's run only ever commits its own part, so two
# crawls committing at the same moment cannot lose each other's update (there is no shared
# manifest to read, modify and write back), with no lock: it works the same on S3. Re-running
# a crawl replaces its part and nothing else.

SIGNATURES_KIND, INDEX_KIND = "dedup-signatures", "dedup-index"


def index_root(root: str) -> str:
    return Layout(root).dedup_index()


def index_part(root: str, crawl: str) -> str:
    """The dataset holding `crawl`'s kept documents' signatures in the index."""
    return Layout(root).dedup_index(crawl)


def _signed_with(uris: list[str], kind: str, params: dict[str, int]) -> list[str]:
    """The datasets among `uris` of `kind`, checked comparable: signatures compare only under
    the same shingling, bands, rows and seed."""
    found = []
    for uri in uris:
        manifest = lake.manifest(uri)
        if manifest.kind != kind:
            continue
        signed = manifest.stats.get("signature")
        if signed != params:
            raise ValueError(
                f"{uri} was signed with {signed}, this run uses {params}: re-sign it or change the dedup config"
            )
        found.append(uri)
    return found


def lake_sources(root: str, params: dict[str, int]) -> list[str]:
    """Every crawl's committed signatures in the lake (scope `lake`)."""
    listed = [uri for uri in lake.list_datasets(Layout(root).dedup_root()) if uri.endswith("/signatures")]
    return _signed_with(listed, SIGNATURES_KIND, params)


def index_parts(root: str, params: dict[str, int], exclude: str | None = None) -> list[str]:
    """Every crawl's part of the index but `exclude`'s (so re-running a crawl never finds it
    duplicating its own earlier run)."""
    if lake.exists(index_root(root)):
        raise ValueError(
            f"{index_root(root)} is an index in the old layout (one manifest for every crawl): move it aside "
            "and re-run index-scope dedup of its crawls (its manifest's stats.crawls) to rebuild it as dedup/index/{crawl}"
        )
    # `exclude`'s own part is left out before the check: a crawl re-run under new signature
    # parameters replaces its part, so that part's parameters do not matter.
    own = index_part(root, exclude).rstrip("/") if exclude else None
    listed = [uri for uri in lake.list_datasets(index_root(root)) if uri.rstrip("/") != own]
    return _signed_with(listed, INDEX_KIND, params)


def commit_index(
    part_uri: str, crawl: str, shards: list[dict[str, Any]], params: dict[str, int], **fields: Any
) -> lake.Manifest:
    """Commit `crawl`'s part of the index (its kept documents' signatures, one shard per input
    shard), replacing that part's earlier version; no other crawl's part is read or written."""
    new = [lake.Shard(path=s["path"], rows=s["rows"], bytes=s["bytes"], sha256=s["sha256"]) for s in shards]
    return lake.commit(part_uri, new, kind=INDEX_KIND, stats={"signature": params, "crawl": crawl}, **fields)
