"""What a dedup run did: counts, the cluster size histogram, example clusters side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from models import lake
from tasks.dedup.clusters import size_histogram
from tasks.dedup.minhash import shingle
from tasks.dedup.stages import EXACT_STEP

PREVIEW_CHARS = 280


def summarize(
    crawl: str, signed: list[dict[str, Any]], removed: list[dict[str, Any]], pairs: int, cluster_uris: dict[str, str]
) -> dict[str, Any]:
    """Documents in and out, removals per step, and the clusters this crawl takes part in."""
    docs_in = sum(s["docs"] for s in signed)
    exact = sum(r["exact"] for r in removed)
    minhash = sum(r["minhash"] for r in removed)
    stats: dict[str, Any] = {
        "docs_in": docs_in,
        "too_short_for_minhash": sum(s["too_short"] for s in signed),
        "removed_exact": exact,
        "removed_minhash": minhash,
        "docs_out": docs_in - exact - minhash,
        "candidate_pairs": pairs,
    }
    for step, uri in cluster_uris.items():
        sizes = cluster_sizes(uri, crawl)
        name = "exact" if step == EXACT_STEP else "minhash"
        stats[f"{name}_clusters"] = len(sizes)
        stats[f"{name}_largest_cluster"] = int(sizes.max(initial=0))
        stats[f"{name}_cluster_sizes"] = size_histogram(sizes)
    return stats


def cluster_sizes(clusters_uri: str, crawl: str) -> np.ndarray:
    """The size of every cluster with at least one document of this crawl."""
    frame = (
        lake.scan(clusters_uri).filter(pl.col("crawl") == crawl).select("cluster", "size").unique("cluster").collect()
    )
    return frame["size"].to_numpy()


def example_clusters(
    cluster_uris: list[str], filtered_uri: str, crawl: str, count: int, per_cluster: int = 3
) -> list[pl.DataFrame]:
    """The `count` largest clusters (MinHash or exact) that remove a document of this crawl
    (ties: cluster label), each as up to `per_cluster` members, the kept one first, with
    text previews and each member's exact shingle Jaccard similarity to the kept one."""
    if count == 0 or not cluster_uris:
        return []
    clusters = pl.concat([lake.scan(uri) for uri in cluster_uris])
    chosen = (
        clusters.filter((pl.col("crawl") == crawl) & (pl.col("id") != pl.col("kept_id")))
        .group_by("cluster")
        .agg(pl.col("size").first())
        .sort(["size", "cluster"], descending=[True, False])
        .head(count)
        .collect()["cluster"]
    )
    members = (
        clusters.filter(pl.col("cluster").is_in(chosen.implode()))
        .with_columns((pl.col("id") == pl.col("kept_id")).alias("kept"))
        .sort(["cluster", "kept", "id"], descending=[False, True, False])
        .group_by("cluster", maintain_order=True)
        .head(per_cluster)
        .collect()
    )
    texts = _texts(filtered_uri, members.filter(pl.col("crawl") == crawl))
    members = members.join(texts, on="id", how="left")
    out = []
    for cluster in chosen.to_list():
        group = members.filter(pl.col("cluster") == cluster)
        out.append(group.with_columns(pl.Series("jaccard", _jaccard_to_first(group["text"].to_list()))))
    return out


def _texts(filtered_uri: str, members: pl.DataFrame) -> pl.DataFrame:
    """id, text of the given members, reading only the input shards they sit in."""
    found = [pl.DataFrame(schema={"id": pl.String, "text": pl.String})]
    for shard, ids in members.group_by("shard").agg("id").iter_rows():
        table = lake.read_shard(lake.shard_uri(filtered_uri, shard), columns=["id", "text"])
        found.append(pl.from_arrow(table).filter(pl.col("id").is_in(ids)).cast({"id": pl.String, "text": pl.String}))
    return pl.concat(found)


def _jaccard_to_first(texts: list[str | None]) -> list[float | None]:
    """Exact Jaccard similarity of each text's shingle set to the first text's."""
    if not texts or texts[0] is None:
        return [None] * len(texts)
    present = [t for t in texts if t is not None]
    shingled = shingle(pl.Series(present, dtype=pl.String))
    sets = [set(shingled.hashes[s : s + c].tolist()) for s, c in zip(shingled.starts, shingled.counts)]
    by_text = iter(sets)
    out: list[float | None] = []
    first = sets[0]
    for text in texts:
        if text is None:
            out.append(None)
            continue
        current = next(by_text)
        union = len(first | current)
        out.append(round(len(first & current) / union, 3) if union else 1.0)
    return out


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def markdown(crawl: str, scope: str, stats: dict[str, Any], examples: list[pl.DataFrame]) -> str:
    """The run's story: counts, histogram, then each example cluster as a table whose
    columns are its documents (kept first)."""
    lines = [
        f"# Dedup of crawl `{crawl}` (scope: {scope})",
        "",
        "| documents in | exact duplicates removed | near-duplicates removed | documents out | too short for MinHash |",
        "|---:|---:|---:|---:|---:|",
        f"| {stats['docs_in']} | {stats['removed_exact']} | {stats['removed_minhash']} | {stats['docs_out']} "
        f"| {stats['too_short_for_minhash']} |",
        "",
        f"Candidate pairs from the LSH bands: {stats['candidate_pairs']}.",
        "",
    ]
    for name in ("exact", "minhash"):
        if f"{name}_clusters" not in stats:
            continue
        histogram = stats[f"{name}_cluster_sizes"]
        lines += [
            f"**{name} clusters**: {stats[f'{name}_clusters']} (largest {stats[f'{name}_largest_cluster']})",
            "",
            "| size | " + " | ".join(histogram) + " |",
            "|---|" + "---:|" * len(histogram),
            "| clusters | " + " | ".join(str(v) for v in histogram.values()) + " |",
            "",
        ]
    for group in examples:
        rows = group.to_dicts()
        lines += [
            f"### {rows[0]['step']} cluster {rows[0]['cluster']} ({rows[0]['size']} documents)",
            "",
            "| | " + " | ".join("kept" if r["kept"] else "removed" for r in rows) + " |",
            "|---|" + "---|" * len(rows),
        ]
        for field in ("id", "crawl", "date", "jaccard"):
            lines.append(f"| {field} | " + " | ".join(_cell(r[field]) for r in rows) + " |")
        previews = [(r["text"] or "(text not in this crawl)")[:PREVIEW_CHARS] for r in rows]
        lines += ["| text | " + " | ".join(_cell(p) for p in previews) + " |", ""]
    return "\n".join(lines)
