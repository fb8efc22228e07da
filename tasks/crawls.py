"""Finding crawls under a crawl root, and which of them the lake has not curated yet.

Two layouts are understood, on local disk or S3:

- Common Crawl's: `{root}/crawl-data/{CRAWL}/warc.paths.gz` (or `{root}/{CRAWL}/warc.paths.gz`),
  a gzipped list of WARC paths relative to `{root}` (for the public bucket, root is
  `s3://commoncrawl`). The list is what defines the crawl, so files need not be listed.
- Folders: `{root}/{crawl}/**/*.warc.gz` (or `.warc`): one crawl per top-level folder.
"""

from __future__ import annotations

import gzip
import re

from tasks import lake

WARC_SUFFIXES = (".warc.gz", ".warc")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def crawl_name(raw: str) -> str:
    """A name safe for lake paths and Prefect keys."""
    name = _SAFE_NAME.sub("-", raw).strip("-.")
    if not name:
        raise ValueError(f"no usable crawl name in {raw!r}")
    return name


def _paths_list(uri: str, base: str) -> list[str]:
    fs, path = lake.filesystem(uri)
    with fs.open(path, "rb") as f:
        text = gzip.decompress(f.read()).decode()
    return [lake.join(base, line.strip()) for line in text.splitlines() if line.strip()]


def discover(root: str) -> dict[str, list[str]]:
    """Crawl name -> its WARC URIs, sorted, for every crawl under `root`."""
    root = lake.normalize(root)
    fs, path = lake.filesystem(root)
    crawls: dict[str, list[str]] = {}
    for listing in sorted(fs.glob(f"{path}/crawl-data/*/warc.paths.gz") + fs.glob(f"{path}/*/warc.paths.gz")):
        name = crawl_name(listing.rstrip("/").split("/")[-2])
        crawls[name] = _paths_list(lake.to_uri(fs, listing), root)
    for entry in sorted(fs.ls(path, detail=False)):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name in ("crawl-data",) or crawl_name(name) in crawls or not fs.isdir(entry):
            continue
        files = sorted(p for p in fs.find(entry) if p.endswith(WARC_SUFFIXES))
        if files:
            crawls[crawl_name(name)] = [lake.to_uri(fs, p) for p in files]
    return crawls


def curated_uri(lake_root: str, crawl: str) -> str:
    return lake.join(lake_root, "curated", crawl, "clean")


def uncurated(root: str, lake_root: str) -> dict[str, list[str]]:
    """The crawls under `root` whose clean dataset the lake does not have yet."""
    return {name: warcs for name, warcs in discover(root).items() if not lake.exists(curated_uri(lake_root, name))}
