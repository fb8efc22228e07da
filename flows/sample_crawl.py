"""The sample crawl: `crawls/{name}/*.warc.gz` plus its ground truth, from a seed.

One task writes each WARC file (with its shards of the `truth` and `facts` datasets); one
task commits both datasets. Both are cached on (config, code), so a re-run with the same
config is all cache hits and rewrites nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from tasks import sample_crawl as crawl
from tasks.config import LakeConfig, SampleCrawlConfig
from tasks.runtime import RunnerConfig, declare, gather, in_lake, lake_task, task_runner
from tasks.sample_crawl.plan import PLANTED, files


@lake_task(code=crawl.CODE)
def write_warc_file(lake_root: str, config: SampleCrawlConfig, index: int) -> dict[str, Any]:
    """WARC file `index` of the crawl, and its truth and facts shards."""
    return crawl.write_file(lake_root, config, index)


@lake_task(code=crawl.CODE)
def commit_crawl(lake_root: str, config: SampleCrawlConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Make the truth and facts datasets visible, after every WARC file is written."""
    return crawl.commit(lake_root, config, results)


@flow(name="sample-crawl", log_prints=True, task_runner=task_runner(RunnerConfig()))
def sample_crawl(lake: LakeConfig = LakeConfig(), config: SampleCrawlConfig = SampleCrawlConfig()) -> dict[str, Any]:
    """Write the deterministic sample crawl into `{lake}/crawls/{config.name}/`."""
    root = lake.open()
    n_files = len(files(config))
    write, commit = in_lake(root, write_warc_file, commit_crawl)
    futures = write.map(unmapped(root), unmapped(config), list(range(n_files)))
    results = gather(futures, f"write {n_files} WARC files", key="sample-crawl-progress")
    out = commit(root, config, results)
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
