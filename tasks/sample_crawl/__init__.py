"""The sample crawl: a deterministic, realistic WARC crawl with its ground truth.

`write_warc_file` writes one WARC file of the crawl plus its rows of the `truth` and `facts`
datasets (one Parquet shard each); `commit_crawl` makes both datasets visible once every file
is written. Both are lake tasks, cached on (config, code): a re-run with the same config is all
cache hits and rewrites nothing. flows/sample_crawl.py maps the first and calls the second.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from models import lake, storage
from tasks.config import SampleCrawlConfig
from tasks.layout import Layout
from tasks.runtime import code_version, config_hash, flow_run_id, lake_task
from tasks.sample_crawl.plan import PLANTED, Page, files
from tasks.sample_crawl.plan import plan as crawl_plan
from tasks.sample_crawl.warc import write_warc

CODE = ("tasks.sample_crawl", "tasks.world", "tasks.mathgen")
TRUTH_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("record_id", pa.string()),
        ("warc", pa.string()),
        ("kind", pa.string()),
        ("expected_step", pa.string()),  # null: the page must survive curation
        ("reason", pa.string()),
        ("entity_id", pa.string()),
        ("pii", pa.list_(pa.string())),  # strings the PII step must replace
        ("duplicate_of", pa.string()),  # the original's URL, for exact and near duplicates
        ("jaccard", pa.float64()),  # 5-gram Jaccard with the original (FineWeb normalisation)
    ]
)
FACTS_SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("name", pa.string()),
        ("attribute", pa.string()),
        ("value", pa.string()),
        ("url", pa.string()),
    ]
)


def crawl_uri(lake_root: str, name: str) -> str:
    return Layout(lake_root).crawl(name)


def warc_name(config: SampleCrawlConfig, index: int) -> str:
    return f"{config.name}-{index:05d}.warc.gz"


def truth_table(pages: list[Page], warc_uri: str) -> pa.Table:
    rows = [
        dict(
            url=p.url,
            record_id=f"<urn:uuid:{p.record_id}>",
            warc=warc_uri,
            kind=p.kind,
            expected_step=p.expected_step,
            reason=p.reason,
            entity_id=p.entity_id,
            pii=list(p.pii),
            duplicate_of=p.duplicate_of,
            jaccard=p.jaccard,
        )
        for p in pages
    ]
    return pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA)


def facts_table(pages: list[Page], config: SampleCrawlConfig) -> pa.Table:
    _, world = crawl_plan(config)
    rows = []
    for page in pages:
        for entity_id, attribute in page.facts:
            value = world.facts(entity_id)[attribute]
            rows.append(
                dict(entity_id=entity_id, name=world.name(entity_id), attribute=attribute, value=value, url=page.url)
            )
    return pa.Table.from_pylist(rows, schema=FACTS_SCHEMA)


@lake_task(code=CODE)
def write_warc_file(lake_root: str, config: SampleCrawlConfig, index: int) -> dict[str, Any]:
    """Write WARC file `index` and its truth and facts shards; return what the commit needs."""
    root = crawl_uri(lake_root, config.name)
    pages = files(config)[index]
    name = warc_name(config, index)
    warc_uri = lake.join(root, name)
    data = write_warc(pages, name, config.name)
    storage.write_bytes(warc_uri, data, atomic=True)
    truth = lake.write_shard(lake.join(root, "truth"), f"part-{index:05d}", truth_table(pages, warc_uri))
    facts = lake.write_shard(Layout(lake_root).facts(config.name), f"part-{index:05d}", facts_table(pages, config))
    return {
        "warc": warc_uri,
        "bytes": len(data),
        "pages": len(pages),
        "kinds": dict(Counter(p.kind for p in pages)),
        "truth_shard": asdict(truth),
        "facts_shard": asdict(facts),
    }


@lake_task(code=CODE)
def commit_crawl(lake_root: str, config: SampleCrawlConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Make `truth` and `facts` visible, with the WARC files as their parents."""
    root = crawl_uri(lake_root, config.name)
    warcs = [r["warc"] for r in results]
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r["kinds"])
    common = dict(
        config_hash=config_hash(config), code_version=code_version(*CODE), parents=warcs, flow_run_id=flow_run_id()
    )
    truth_uri, facts_uri = lake.join(root, "truth"), Layout(lake_root).facts(config.name)
    truth = lake.commit(
        truth_uri,
        [lake.Shard(**r["truth_shard"]) for r in results],
        kind="crawl-truth",
        stats={"pages": sum(kinds.values()), "kinds": dict(kinds)},
        **common,
    )
    facts = lake.commit(
        facts_uri, [lake.Shard(**r["facts_shard"]) for r in results], kind="crawl-facts", stats={}, **common
    )
    return {
        "crawl": config.name,
        "uri": root,
        "warcs": warcs,
        "truth": truth_uri,
        "facts": facts_uri,
        "pages": truth.rows,
        "facts_rows": facts.rows,
        "bytes": sum(r["bytes"] for r in results),
        "kinds": dict(sorted(kinds.items())),
        "expected_steps": {k: PLANTED[k][1] for k in sorted(kinds) if k in PLANTED},
    }
