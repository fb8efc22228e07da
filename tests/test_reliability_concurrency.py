"""Concurrency: two pipeline runs (curate with dedup, tokenizer, tokenize) on the same crawl and
the same lake at the same time, as two schedules or two users would start them. Both finish,
and the lake holds exactly the datasets an uninterrupted single run writes: every manifest
consistent with its shards, byte-identical shards, every document once."""

from __future__ import annotations

import os
import threading
import time

import pyarrow as pa
import pytest

from models import lake
from tests.support import stress


def test_a_commit_never_breaks_a_shard_another_run_is_writing(lake_root):
    """One run commits a dataset while another writes a shard of it: the writer's temporary
    file must survive the committer's cleanup (it used to remove all of `_tmp`)."""
    uri = lake.join(lake_root, "d")
    table = pa.table({"x": list(range(20_000))})
    first = lake.write_shard(uri, "a", table)
    lake.commit(uri, [first], kind="t")  # warm (imports) before the race
    errors: list[str] = []
    counts = {"writes": 0, "commits": 0}
    stop = time.monotonic() + 3

    def repeat(what: str, action) -> None:
        while time.monotonic() < stop:
            try:
                action()
                counts[what] += 1
            except Exception as exc:  # collected: the assertion below shows them
                errors.append(repr(exc))

    threads = [
        threading.Thread(target=repeat, args=("writes", lambda: lake.write_shard(uri, "b", table))),
        threading.Thread(target=repeat, args=("commits", lambda: lake.commit(uri, [first], kind="t"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and counts["writes"] >= 3 and counts["commits"] >= 3, (errors[:3], counts)


def test_commit_removes_only_stale_leftovers(tmp_path):
    uri = str(tmp_path / "d")
    shard = lake.write_shard(uri, "a", pa.table({"x": [1]}))
    tmp = tmp_path / "d" / lake.TMP_DIR
    stale, fresh = tmp / "dead-writer.parquet", tmp / "live-writer.parquet"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    old = time.time() - lake.STALE_TMP_S - 60
    os.utime(stale, (old, old))
    lake.commit(uri, [shard], kind="t")
    assert not stale.exists() and fresh.exists()
    assert lake.scan(uri).collect().height == 1


def test_a_dataset_another_process_commits_is_seen_by_a_process_that_listed_it_before(s3_bucket, s3_server):
    """s3fs caches a folder's listing for the life of the process by default, so a manifest
    committed later by another process stayed invisible ("no dataset at ..."), even while
    `list_datasets` found it. The lake's filesystem has no listings cache."""
    import s3fs

    uri = s3_bucket + "/lake/d"
    shard = lake.write_shard(uri, "part-00000", pa.table({"x": [1, 2]}))
    fs, path = lake.filesystem(uri)
    assert fs.ls(path) and not lake.exists(uri)  # this process has listed the folder
    other = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)  # another process
    other.pipe_file(f"{path}/_manifest.json", lake.Manifest(kind="t", shards=[shard]).to_json().encode())
    assert lake.list_datasets(s3_bucket + "/lake") == [uri]
    assert lake.exists(uri) and lake.manifest(uri).rows == 2
    assert lake.scan(uri).collect().height == 2


@pytest.mark.slow
def test_two_pipelines_at_once_on_one_lake_leave_correct_datasets(stress_crawl, stress_reference, tmp_path):
    root = str(tmp_path / "lake")
    runs = [stress.start(root, stress_crawl) for _ in range(2)]
    results = [stress.finish(proc) for proc in runs]
    assert all(r["returncode"] == 0 for r in results)
    assert stress.differences(stress_reference["snapshot"], stress.snapshot(root)) == []
    assert stress.audit(root, stress.truth_uri(stress_crawl)) == {
        "documents": stress.PAGES,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
    }
