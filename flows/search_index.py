"""Build the search tool's BM25 index over a crawl's clean documents: `search/{crawl}/` (or over
several crawls', for a run that trains on them: `search/{run}/`)."""

from __future__ import annotations

import random
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models import lake as lakes
from models.tools import SearchIndex, format_passages
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
from tasks.runtime import RunnerConfig, declare, in_lake, run_mapped
from tasks.search import SearchConfig, build_index, split_shard

EXAMPLE_QUERIES = 3


def _examples(uri: str, seed: int = 0) -> str:
    """What the tool returns for a few queries made of passage titles: a check by eye that
    the index finds the page a title names."""
    frame = lakes.scan(uri).select("title").unique().sort("title").collect()
    titles = [t for t in frame["title"].to_list() if t]
    picked = random.Random(seed).sample(titles, min(EXAMPLE_QUERIES, len(titles)))
    index = SearchIndex.open(uri)
    try:
        lines = [
            f"# Search index `{uri}`",
            "",
            f"{len(index):,} passages. What the model would read for a few queries:",
            "",
        ]
        for query in picked:
            hits = index.search(query, k=2)
            lines += [f"### `{query}`", "", *[f"> {line}" for line in format_passages(hits).splitlines()], ""]
    finally:
        index.close()
    return "\n".join(lines)


@flow(name="search-index", log_prints=True)
def search_index(
    lake: LakeConfig = LakeConfig(),
    config: SearchConfig = SearchConfig(),
    clean: str | list[str] | None = None,
    crawl: str | None = None,
    runner: RunnerConfig = RunnerConfig(),
) -> dict[str, Any]:
    """Split `clean` (default `curated/{crawl}/clean`; or several crawls' clean datasets) into
    passages, one task per shard, and index them into `search/{crawl}/`: `crawl` defaults to
    the crawl `clean` belongs to, and must be given (the run's name) for several."""
    root = lake.open()
    layout = Layout(root)
    if clean is None:
        if crawl is None:
            raise ValueError("give the clean dataset(s) or the crawl to index")
        clean = layout.curated(crawl).clean
    if crawl is None:
        if not isinstance(clean, str):
            raise ValueError("an index over several crawls needs a name (the run's)")
        crawl = layout.crawl_of(clean)
    out = layout.search(crawl)
    built = lakes.read_manifest(out)
    if built is not None and built.stats.get("passage_chars", config.passage_chars) != config.passage_chars:
        # Passages of another size (another preset's) serve that preset's models: this index
        # gets its own name, and each model's lineage says which is its own.
        crawl = f"{crawl}-p{config.passage_chars}"
        out = layout.search(crawl)

    shards = [s for c in ([clean] if isinstance(clean, str) else clean) for s in lakes.shard_uris(c)]
    parts = [f"part-{i:05d}" for i in range(len(shards))]
    results = run_mapped(
        in_lake(root, split_shard),
        runner,
        f"search: split {len(shards)} shards",
        key="search-index-progress",
        shard=shards,
        out=unmapped(out),
        part=parts,
        config=unmapped(config),
    )
    stats = in_lake(root, build_index)(clean, out, results, config)
    declare(out)

    rows = [
        {"shard": p, **{k: r[k] for k in ("documents", "passages", "chars", "skipped_empty")}}
        for p, r in zip(parts, results)
    ]
    rows.append({"shard": "total", **{k: stats[k] for k in ("documents", "passages", "chars", "skipped_empty")}})
    create_table_artifact(rows, key=artifact_key("search-index-counts", crawl), description=f"passages of {crawl}")
    create_markdown_artifact(
        _examples(out), key=artifact_key("search-index-examples", crawl), description=f"search index of {crawl}"
    )
    print(
        f"search index {out}: {stats['passages']:,} passages of {stats['documents']:,} documents, {stats['index_bytes']:,} bytes"
    )
    return stats
