"""Storage faults: the real S3 protocol (s3fs -> tests/support/faults.py's proxy -> moto) failing a share
of requests with the errors S3 returns (500 InternalError, 503 SlowDown, connection resets,
bodies cut short).

The layers, each tested where it acts: botocore retries 5xx, SlowDown and dropped connections
(models/storage.S3_RETRIES: standard mode, 10 attempts), aiohttp reconnects once, s3fs retries
short bodies and SlowDown, and a fault that outlasts them reaches our task retries
(tasks.runtime: storage errors only; a 403 is never retried). A run through faults leaves the
same bytes as a clean run.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from prefect import flow

from models import lake
from tasks.runtime import _retryable, lake_task
from tests.support import stress
from tests.support.faults import FaultProxy


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """The fault proxy in front of moto; s3:// URIs go through it inside the test."""
    with FaultProxy(s3_server, seed=11) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.endpoint)
        yield p


def fresh_fs(endpoint: str, **options):
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True, **options)


def test_a_read_cut_short_is_an_error_never_short_data(s3_bucket, s3_server, proxy):
    data = os.urandom(200_000)
    path = s3_bucket.removeprefix("s3://") + "/blob"
    fresh_fs(s3_server).pipe_file(path, data)
    fs = fresh_fs(proxy.endpoint)
    with proxy.faulty(0.5, ["truncate"]):  # half the reads are cut: s3fs notices and retries
        assert fs.cat_file(path) == data
        with fs.open(path, "rb", block_size=1 << 15) as f:
            f.seek(12_345)
            assert f.read(100_000) == data[12_345:112_345]
    assert proxy.injected["truncate"] > 0
    with proxy.faulty(1.0, ["truncate"]), pytest.raises(Exception) as failure:  # every read cut: an error
        fs.cat_file(path)
    assert type(failure.value).__name__ == "ClientPayloadError" and _retryable(failure.value)


@pytest.mark.parametrize("kind", ["500", "503", "reset", "truncate", "403"])
def test_errors_that_outlast_the_client_retries_reach_task_retries_only_if_a_retry_can_fix_them(
    s3_bucket, s3_server, proxy, kind
):
    """What s3fs raises once its retries and botocore's are spent (both cut to one attempt
    here, to see the error at once): storage faults are retried by our tasks, a 403 is not.
    (aiohttp itself reconnects once when a reused connection is reset: a reset needs two.)"""
    path = s3_bucket.removeprefix("s3://") + "/blob"
    fresh_fs(s3_server).pipe_file(path, b"x" * 1000)
    fs = fresh_fs(proxy.endpoint, config_kwargs={"retries": {"total_max_attempts": 1}})
    fs.retries = 1
    times = 2 if kind == "reset" else 1
    proxy.fail_next(times, kind, path=path.split("/", 1)[1])
    with pytest.raises(Exception) as failure:
        fs.cat_file(path)
    assert _retryable(failure.value) == (kind != "403"), repr(failure.value)
    assert proxy.injected[kind] == times
    assert fs.cat_file(path) == b"x" * 1000  # the next attempt reads it


def test_lake_writes_and_reads_through_faults_are_exact(s3_bucket, proxy):
    root = s3_bucket + "/lake"
    tables = [
        pa.table({"id": [f"{i}-{j}" for j in range(500)], "text": [f"document {i} {j} " * 20 for j in range(500)]})
        for i in range(3)
    ]
    with proxy.faulty(0.25):
        written = lake.write_dataset(lake.join(root, "d"), tables, kind="test")
        back = lake.scan(lake.join(root, "d")).collect().to_arrow()
        again = stress.snapshot(root)  # every shard's bytes hash to its manifest's checksum
    assert back.sort_by("id").to_pylist() == pa.concat_tables(tables).sort_by("id").to_pylist()
    assert [s.sha256 for s in written.shards] == [again["d"][s.path] for s in written.shards]
    assert proxy.total > 0


@pytest.fixture(scope="module")
def s3_crawl(s3_server) -> list[str]:
    """The sample crawl on S3, outside the lakes under test (written straight to moto)."""
    import s3fs

    s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}).mkdir("crawl-source")
    return stress.source_crawl("s3://crawl-source/c", pages=20, files=2)


@pytest.mark.slow
def test_curate_and_tokenize_through_faults_equal_a_clean_run(prefect_server, s3_server, s3_crawl, proxy, monkeypatch):
    """Curate, tokenizer and tokenize on S3 with 15% of requests failing. Dedup is off here
    (on S3 it makes ~700 more requests for two shards); benchmarks/chaos.py runs it too."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    options = {"curate.dedup_enabled": False}
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    stress.run_pipeline("s3://crawl-source/clean", s3_crawl, **options)
    clean = stress.snapshot("s3://crawl-source/clean")

    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    # Every read of one WARC file is cut short five times running, which spends s3fs's retries:
    # its curate task fails, and Prefect's retry (after a backoff) reads it.
    proxy.fail_next(5, "truncate", path=s3_crawl[0].removeprefix("s3://"))
    with proxy.faulty(0.15):
        result = stress.run_pipeline("s3://crawl-source/faulty", s3_crawl, **options)
    assert proxy.total >= 15 + 5, dict(proxy.injected)

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    assert stress.differences(clean, stress.snapshot("s3://crawl-source/faulty")) == []
    assert set(clean) >= {
        "curated/sample/clean",
        "curated/sample/removed",
        "tokenizers/bpe-stress",
        "tokens/bpe-stress/sample/train",
    }
    assert stress.audit("s3://crawl-source/faulty", stress.truth_uri(s3_crawl)) == {
        "documents": 20,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
    }
    assert result["curate"]["docs_in"] == 20

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"curate-{s3_crawl[0]}"]))
        )
    assert min(r.run_count for r in runs) == 1 and max(r.run_count for r in runs) >= 2  # clean run's; the retried one


ATTEMPTS: list[str] = []


@lake_task()
def write_a_dataset(root: str) -> str:
    ATTEMPTS.append(root)
    return lake.write_dataset(lake.join(root, "d"), [pa.table({"a": [1]})], kind="test")


@lake_task()
def read_a_file(uri: str) -> int:
    ATTEMPTS.append(uri)
    fs, path = lake.filesystem(uri)
    return len(fs.cat_file(path))


@flow
def refused_flow(kind: str, target: str) -> object:
    job = write_a_dataset if kind == "invalid_bucket" else read_a_file
    return job.with_options(retry_delay_seconds=0)(target)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("invalid_bucket", "The specified bucket is not valid"),  # InvalidBucketName: OSError(22)
        ("missing_bucket", "The specified bucket does not exist"),  # NoSuchBucket
        ("access_denied", "Access Denied"),  # 403 AccessDenied
    ],
)
def test_what_no_retry_can_fix_fails_at_once_with_s3s_own_message(
    prefect_server, s3_bucket, s3_server, proxy, kind, message
):
    """A lake on a bucket S3 refuses is not retried four times: the task runs once and its
    error carries S3's message (retried errors are checked above and in test_runtime)."""
    if kind == "invalid_bucket":
        target = "s3://ab/lake"  # too short a name: S3 (and moto) answer InvalidBucketName
    elif kind == "missing_bucket":
        target = f"s3://missing-{os.urandom(4).hex()}/crawl.warc.gz"
    else:
        target = s3_bucket + "/crawl.warc.gz"
        fresh_fs(s3_server).pipe_file(target.removeprefix("s3://"), b"x")
        proxy.fail_next(1, "403", path="crawl.warc.gz")
    ATTEMPTS.clear()
    with pytest.raises(OSError, match=message):
        refused_flow(kind, target)
    assert ATTEMPTS == [target], "run once: a retry cannot fix this"
