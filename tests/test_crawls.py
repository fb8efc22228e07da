"""Crawl discovery over both layouts, on local disk and S3."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from models import lake
from tasks import crawls


def put(uri: str, data: bytes) -> None:
    fs, path = lake.filesystem(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def test_folder_layout_and_common_crawl_layout(lake_root):
    root = lake.join(lake_root, "crawlroot")
    put(lake.join(root, "2026-a", "x", "one.warc.gz"), b"w")
    put(lake.join(root, "2026-a", "two.warc"), b"w")
    put(lake.join(root, "2026-a", "notes.txt"), b"n")
    listing = (
        "crawl-data/CC-MAIN-2026-01/segments/1/warc/f1.warc.gz\ncrawl-data/CC-MAIN-2026-01/segments/2/warc/f2.warc.gz\n"
    )
    put(lake.join(root, "crawl-data", "CC-MAIN-2026-01", "warc.paths.gz"), gzip.compress(listing.encode()))
    found = crawls.discover(root)
    assert set(found) == {"2026-a", "CC-MAIN-2026-01"}
    assert found["2026-a"] == [lake.join(root, "2026-a", "two.warc"), lake.join(root, "2026-a", "x", "one.warc.gz")]
    assert found["CC-MAIN-2026-01"] == [
        lake.join(root, "crawl-data/CC-MAIN-2026-01/segments/1/warc/f1.warc.gz"),
        lake.join(root, "crawl-data/CC-MAIN-2026-01/segments/2/warc/f2.warc.gz"),
    ]


def test_uncurated_skips_crawls_with_a_clean_dataset(lake_root):
    root = lake.join(lake_root, "crawlroot")
    lake_dir = lake.join(lake_root, "lake")
    put(lake.join(root, "old", "a.warc.gz"), b"w")
    put(lake.join(root, "new", "b.warc.gz"), b"w")
    assert set(crawls.uncurated(root, lake_dir)) == {"old", "new"}
    lake.write_dataset(crawls.curated_uri(lake_dir, "old"), [pa.table({"id": ["x"]})], kind="curated.clean")
    assert set(crawls.uncurated(root, lake_dir)) == {"new"}


@pytest.mark.parametrize(
    "raw,expected", [("CC-MAIN-2026-01", "CC-MAIN-2026-01"), ("my crawl/2", "my-crawl-2"), ("..a..", "a")]
)
def test_crawl_names_are_path_safe(raw, expected):
    assert crawls.crawl_name(raw) == expected


def test_an_unusable_name_is_an_error():
    with pytest.raises(ValueError):
        crawls.crawl_name("///")
