"""Finding crawls under a crawl root, and which of them the lake has not curated yet.

Three layouts are understood, on local disk or S3:

- Common Crawl's: `{root}/crawl-data/{CRAWL}/warc.paths.gz` (or `{root}/{CRAWL}/warc.paths.gz`),
  a gzipped list of WARC paths relative to `{root}` (for the public bucket, root is
  `s3://commoncrawl`). The list is what defines the crawl, so files need not be listed.
- A folder of crawl folders: `{root}/{crawl}/**/*.warc.gz` (or `.warc`): one crawl per folder.
- A folder of WARC files: `{root}/*.warc.gz` directly in the root: one crawl, named by the root.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from models import lake
from tasks.layout import Layout, safe_name

WARC_SUFFIXES = (".warc.gz", ".warc")
crawl_name = safe_name  # a crawl's name: safe for lake paths and Prefect keys


@dataclass
class Found:
    """What a crawl root holds: crawl name -> its WARC URIs (sorted), and how each was found."""

    crawls: dict[str, list[str]] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, warcs: list[str], layout: str) -> None:
        self.crawls[name] = warcs
        self.layouts[name] = layout

    def describe(self, root: str) -> str:
        if not self.crawls:
            return f"{root}: no WARC files (.warc.gz or .warc), no crawl folders, no Common Crawl warc.paths.gz"
        parts = [f"{name} ({len(self.crawls[name])} WARC files, {self.layouts[name]})" for name in sorted(self.crawls)]
        return f"{root}: {len(parts)} crawl(s): " + "; ".join(parts)


def _paths_list(uri: str, base: str) -> list[str]:
    fs, path = lake.filesystem(uri)
    with fs.open(path, "rb") as f:
        text = gzip.decompress(f.read()).decode()
    return [lake.join(base, line.strip()) for line in text.splitlines() if line.strip()]


def find(root: str) -> Found:
    """Every crawl under `root`, in whichever of the three layouts it is."""
    root = lake.normalize(root)
    fs, path = lake.filesystem(root)
    found = Found()
    if not fs.isdir(path):
        raise FileNotFoundError(f"no folder at {root}")
    for listing in sorted(fs.glob(f"{path}/crawl-data/*/warc.paths.gz") + fs.glob(f"{path}/*/warc.paths.gz")):
        found.add(
            safe_name(PurePosixPath(listing).parent.name),
            _paths_list(lake.to_uri(fs, listing), root),
            "Common Crawl warc.paths.gz",
        )
    loose = []
    for entry in sorted(fs.ls(path, detail=False)):
        name = PurePosixPath(entry).name
        if fs.isdir(entry):
            if name == "crawl-data" or safe_name(name) in found.crawls:
                continue
            files = sorted(p for p in fs.find(entry) if p.endswith(WARC_SUFFIXES))
            if files:
                found.add(safe_name(name), [lake.to_uri(fs, p) for p in files], "crawl folder")
        elif entry.endswith(WARC_SUFFIXES):
            loose.append(lake.to_uri(fs, entry))
    if loose:
        name = safe_name(PurePosixPath(path).name)
        if name in found.crawls:
            raise ValueError(
                f"{root} holds WARC files and a crawl folder named {name!r} too: move the files into a folder"
            )
        found.add(name, loose, "WARC files in the root")
    return found


def discover(root: str) -> dict[str, list[str]]:
    """Crawl name -> its WARC URIs, sorted, for every crawl under `root`."""
    return find(root).crawls


def curated_uri(lake_root: str, crawl: str) -> str:
    return Layout(lake_root).curated(crawl).clean


def uncurated(root: str, lake_root: str) -> dict[str, list[str]]:
    """The crawls under `root` whose clean dataset the lake does not have yet."""
    return {name: warcs for name, warcs in discover(root).items() if not lake.exists(curated_uri(lake_root, name))}
