"""Candidate pairs, connected components and the keep rule: the logic of stages 2 and 3.

Everything here is a pure function of its inputs' *contents*, never of their order: edges
come from groups sorted by id, components are labelled by their smallest member, and the
kept document of a cluster is chosen by a total order on the documents themselves. So the
same documents are kept whatever the shard order, the task runner, or which task finished
first.

The keep rule (one document per cluster):
1. a document from the index of earlier runs (it was already published), then
2. the earliest fetch date (WARC-Date; ISO 8601 UTC, so text order is time order; a missing
   date sorts last), then
3. the smallest id (the WARC-Record-ID), which breaks every remaining tie.

datatrove keeps the union-find root instead, which depends on the order of the unions.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tasks.dedup.minhash import word_hash

# What a candidate document brings to a cluster (+ from_index, which its source decides).
MEMBER_COLUMNS = ["id", "crawl", "shard", "date"]
KEEP_ORDER = (["from_index", "date", "id"], [True, False, False])  # columns, descending


def duplicate_edges(frame: pl.LazyFrame, key: str | list[str]) -> pl.LazyFrame:
    """Edges `(a, b)` linking the documents that share `key`: a star from each group's
    smallest id to every other member (a group of k needs only k-1 edges to be connected).

    Groups made only of index documents are skipped: they were deduplicated when they were
    indexed, and cannot change which new document is kept.
    """
    groups = (
        frame.group_by(key)
        .agg(pl.col("id").sort().alias("ids"), (~pl.col("from_index")).any().alias("has_new"))
        .filter((pl.col("ids").list.len() > 1) & pl.col("has_new"))
    )
    return groups.select(pl.col("ids").list.first().alias("a"), pl.col("ids").list.slice(1).alias("b")).explode("b")


def union_find(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Connected components of `n` nodes joined by edges `a[i]-b[i]`: each node's label is
    the smallest node of its component.

    Union-find done a whole edge list at a time (hook-and-compress): every edge whose ends
    have different roots hooks the larger root under the smaller one, then pointer jumping
    flattens every tree to its root; repeat until no edge crosses two roots. Roots only
    ever decrease, so the result is the component minimum whatever the edge order, in a
    few numpy passes instead of a Python call per edge.
    """
    parent = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        crossing = ra != rb
        if not crossing.any():
            return parent
        lo, hi = np.minimum(ra[crossing], rb[crossing]), np.maximum(ra[crossing], rb[crossing])
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping: every node ends pointing at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def components(pairs: pl.DataFrame) -> pl.DataFrame:
    """`id, component` for every document in `pairs` (columns a, b); the component number is
    the position of its smallest id among all the ids, sorted."""
    ids = pl.concat([pairs["a"], pairs["b"]]).unique().sort()
    a = ids.search_sorted(pairs["a"]).to_numpy()
    b = ids.search_sorted(pairs["b"]).to_numpy()
    return pl.DataFrame({"id": ids, "component": union_find(a, b, len(ids))})


def choose_kept(members: pl.DataFrame, group: str | list[str]) -> pl.DataFrame:
    """`members` (MEMBER_COLUMNS, from_index and the group column(s)) with kept_id, kept_crawl and size of
    their group, by the keep rule above."""
    columns, descending = KEEP_ORDER
    ranked = members.sort(columns, descending=descending, nulls_last=True)
    kept = ranked.group_by(group, maintain_order=True).agg(
        pl.col("id").first().alias("kept_id"),
        pl.col("crawl").first().alias("kept_crawl"),
        pl.len().cast(pl.Int32).alias("size"),
    )
    return members.join(kept, on=group, how="left").sort("id")


def with_cluster_ids(members: pl.DataFrame, step: str) -> pl.DataFrame:
    """`members` with `cluster`: a stable int64 label from the step and the kept document, so
    the same cluster has the same label in every run."""
    distinct = members["kept_id"].unique().sort()
    labels = [word_hash(f"{step}:{k}") >> 1 for k in distinct.to_list()]  # one per cluster
    lookup = pl.DataFrame({"kept_id": distinct, "cluster": pl.Series(labels, dtype=pl.Int64)})
    return members.join(lookup, on="kept_id", how="left")


SIZE_BINS = [(2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 100), (101, None)]


def size_histogram(sizes: np.ndarray | list[int]) -> dict[str, int]:
    """Clusters per size bin: {"2": n, "3": n, "4-5": n, ..., "101+": n}."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = {}
    for lo, hi in SIZE_BINS:
        label = str(lo) if lo == hi else (f"{lo}+" if hi is None else f"{lo}-{hi}")
        out[label] = int(((sizes >= lo) & (sizes <= (hi or np.iinfo(np.int64).max))).sum())
    return out
