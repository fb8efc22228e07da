"""Deduplication: exact duplicates, then FineWeb's MinHash in four stages over the lake.

The curate flow calls `dedup` as a subflow between its quality filters and PII (as FineWeb
does), then drops each shard's removals in its finalize task (tasks/dedup/apply.py);
`crawl2chat dedup` runs it alone on a crawl's filtered documents.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models import lake as lakes
from tasks.config import LakeConfig
from tasks.dedup import DedupConfig, report
from tasks.dedup.stages import (
    CODE,
    EXACT_STEP,
    MINHASH_STEP,
    SIGNATURES_KIND,
    band_pairs,
    cluster_pairs,
    commit_index,
    exact_groups,
    index_part,
    index_parts,
    lake_sources,
    shard_removals,
    sign_shard,
)
from tasks.layout import Layout, artifact_key
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, flow_run_id, in_lake, run_mapped


def _shards(results: list[dict[str, Any]]) -> list[lakes.Shard]:
    return [lakes.Shard(path=r["path"], rows=r["rows"], bytes=r["bytes"], sha256=r["sha256"]) for r in results]


@flow(name="dedup", log_prints=True)
def dedup(
    filtered: str,
    crawl: str,
    lake: LakeConfig = LakeConfig(),
    config: DedupConfig = DedupConfig(),
    runner: RunnerConfig = RunnerConfig(),
) -> dict[str, Any]:
    """Deduplicate the documents of the `filtered` dataset (one shard per WARC file) and
    return `removals`, the URI of the removal dataset (id, step, reason, cluster, kept_id;
    one shard per input shard, same names), with the run's stats. Everything is written
    under dedup/{crawl}/ (and dedup/index/{crawl} in index scope)."""
    root = lake.open()
    index_uri = index_part(root, crawl) if config.scope == "index" else None  # also rejects the crawl name "index"
    filtered_uri = lakes.normalize(filtered)
    uri = {name: Layout(root).dedup(crawl, name) for name in ("signatures", "exact", "pairs", "clusters", "remove")}
    params = config.signature_params()
    provenance = dict(config_hash=config_hash(config), code_version=code_version(*CODE), flow_run_id=flow_run_id())
    inputs = lakes.shard_uris(filtered_uri)
    if not inputs:
        raise ValueError(f"{filtered_uri} has no shards: nothing to deduplicate")

    # Stage 1: signatures, one task per input shard.
    signed = run_mapped(
        in_lake(root, sign_shard),
        runner,
        "dedup: signatures",
        key="dedup-signatures",
        shard_uri=inputs,
        out_uri=unmapped(uri["signatures"]),
        crawl=unmapped(crawl),
        params=unmapped(params),
        batch_size=unmapped(config.batch_size),
    )
    lakes.commit(
        uri["signatures"],
        _shards(signed),
        kind=SIGNATURES_KIND,
        parents=[filtered_uri],
        stats={
            "signature": params,
            "docs": sum(s["docs"] for s in signed),
            "too_short": sum(s["too_short"] for s in signed),
        },
        **provenance,
    )

    # The signatures this crawl is compared with, by scope.
    sources = lake_sources(root, params) if config.scope == "lake" else [uri["signatures"]]
    index_in = index_parts(root, params, exclude=crawl) if index_uri else []
    compared = dict(sources=unmapped(sources), index_uris=unmapped(index_in))
    parents = sources + index_in
    n_splits = config.splits_for(sum(lakes.manifest(u).rows for u in sources))
    splits = list(range(n_splits))

    # Exact duplicates first, one task per slice of the text-hash range.
    exact_uri = uri["exact"] if config.exact else None
    if exact_uri:
        exact = run_mapped(
            in_lake(root, exact_groups),
            runner,
            "dedup: exact duplicates",
            key="dedup-exact",
            split=splits,
            splits=unmapped(n_splits),
            out_uri=unmapped(exact_uri),
            **compared,
        )
        lakes.commit(
            exact_uri,
            _shards(exact),
            kind="dedup-exact",
            parents=parents,
            stats={"removed": sum(e["removed"] for e in exact)},
            **provenance,
        )
        parents = parents + [exact_uri]

    # Stage 2: candidate pairs, one task per band (x slice of its hash range).
    pairs = run_mapped(
        in_lake(root, band_pairs),
        runner,
        "dedup: LSH buckets",
        key="dedup-buckets",
        band=[b for b in range(config.bands) for _ in splits],
        split=[s for _ in range(config.bands) for s in splits],
        splits=unmapped(n_splits),
        exact_uri=unmapped(exact_uri),
        out_uri=unmapped(uri["pairs"]),
        **compared,
    )
    lakes.commit(
        uri["pairs"], _shards(pairs), kind="dedup-pairs", parents=parents, stats={"splits": n_splits}, **provenance
    )

    # Stage 3: connected components of the pairs, and the kept document of each.
    clustered = in_lake(root, cluster_pairs)(uri["pairs"], sources, index_in, uri["clusters"])
    lakes.commit(
        uri["clusters"],
        _shards([clustered]),
        kind="dedup-clusters",
        parents=[uri["pairs"], *parents],
        stats={"pairs": clustered["pairs"]},
        **provenance,
    )

    # Stage 4: each input shard's removals (and, in index scope, its kept documents' signatures).
    removed = run_mapped(
        in_lake(root, shard_removals),
        runner,
        "dedup: removals",
        key="dedup-removals",
        shard=[lakes.shard_name(u) for u in inputs],
        crawl=unmapped(crawl),
        exact_uri=unmapped(exact_uri),
        clusters_uri=unmapped(uri["clusters"]),
        signatures_uri=unmapped(uri["signatures"]),
        out_uri=unmapped(uri["remove"]),
        index_uri=unmapped(index_uri),
    )
    cluster_uris = {MINHASH_STEP: uri["clusters"], **({EXACT_STEP: exact_uri} if exact_uri else {})}
    stats = report.summarize(crawl, signed, removed, clustered["pairs"], cluster_uris)
    lakes.commit(
        uri["remove"],
        _shards(removed),
        kind="dedup-remove",
        parents=[filtered_uri, *cluster_uris.values()],
        stats=stats,
        **provenance,
    )
    written = [uri["signatures"], *([exact_uri] if exact_uri else []), uri["pairs"], uri["clusters"], uri["remove"]]
    if index_uri:
        commit_index(
            index_uri,
            crawl,
            [r["indexed"] for r in removed],
            params,
            parents=[uri["signatures"], uri["remove"]],
            **provenance,
        )
        written.append(index_uri)
    declare(*written)

    examples = report.example_clusters(list(cluster_uris.values()), filtered_uri, crawl, config.examples)
    create_markdown_artifact(
        report.markdown(crawl, config.scope, stats, examples),
        key=artifact_key("dedup-report", crawl),
        description=f"Dedup of {crawl}",
    )
    create_table_artifact(
        [{"measure": k, "value": v} for k, v in stats.items() if not isinstance(v, dict)],
        key=artifact_key("dedup-stats", crawl),
        description=f"Dedup of {crawl}",
    )
    print(
        f"dedup {crawl}: {stats['docs_in']} in, {stats['removed_exact']} exact and {stats['removed_minhash']} near duplicates removed, {stats['docs_out']} out"
    )
    return {"removals": uri["remove"], "stats": stats, "datasets": written}
