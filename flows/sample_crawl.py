"""The sample crawl: `crawls/{name}/*.warc.gz` plus its ground truth, from a seed.

One task writes each WARC file (with its shards of the `truth` and `facts` datasets); one
task commits both datasets (tasks/sample_crawl).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from tasks.config import LakeConfig, SampleCrawlConfig
from tasks.runtime import RunnerConfig, declare, in_lake, run_mapped
from tasks.sample_crawl import commit_crawl, write_warc_file
from tasks.sample_crawl.plan import PLANTED, files


@flow(name="sample-crawl", log_prints=True)
def sample_crawl(
    lake: LakeConfig = LakeConfig(),
    config: SampleCrawlConfig = SampleCrawlConfig(),
    runner: RunnerConfig = RunnerConfig(),
) -> dict[str, Any]:
    """Write the deterministic sample crawl into `{lake}/crawls/{config.name}/`."""
    root = lake.open()
    n_files = len(files(config))
    results = run_mapped(
        in_lake(root, write_warc_file),
        runner,
        f"write {n_files} WARC files",
        key="sample-crawl-progress",
        lake_root=unmapped(root),
        config=unmapped(config),
        index=list(range(n_files)),
    )
    out = in_lake(root, commit_crawl)(root, config, results)
    declare(out["truth"], out["facts"])

    rows = [
        {
            "kind": kind,
            "pages": n,
            "expected_step": PLANTED[kind][1] if kind in PLANTED else "survives",
            "note": "planted" if kind in PLANTED else "clean",
        }
        for kind, n in out["kinds"].items()
    ]
    create_table_artifact(
        key="sample-crawl-kinds",
        table=sorted(rows, key=lambda r: (r["note"], -r["pages"])),
        description=f"{out['pages']} pages in {n_files} WARC files ({out['bytes'] / 1e6:.1f} MB) at {out['uri']}; "
        f"{out['facts_rows']} encyclopedia facts",
    )
    print(f"sample crawl: {out['pages']} pages, {len(out['warcs'])} WARC files under {out['uri']}")
    return out
