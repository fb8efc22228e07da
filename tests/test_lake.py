"""The lake on local disk and on a real S3-protocol server: the same cases on both."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import lake


def table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": [f"doc-{i}" for i in range(start, start + n)], "n": list(range(start, start + n))})


def test_write_list_read_back(lake_root):
    uri = lake.join(lake_root, "curated", "c1", "clean")
    written = lake.write_dataset(
        uri,
        [table(3), table(2, start=3)],
        kind="test.docs",
        config_hash="abc",
        code_version="v1",
        parents=["/warcs/a.warc.gz"],
    )
    assert written.rows == 5
    m = lake.manifest(uri)
    assert [s.rows for s in m.shards] == [3, 2]
    assert m.kind == "test.docs" and m.config_hash == "abc" and m.code_version == "v1"
    assert m.parents == ["/warcs/a.warc.gz"]
    assert lake.list_datasets(lake_root) == [lake.normalize(uri)]
    back = lake.scan(uri).sort("n").collect()
    assert back["id"].to_list() == [f"doc-{i}" for i in range(5)]
    streamed = pa.Table.from_batches(list(lake.iter_batches(uri, batch_size=2)))
    assert streamed.num_rows == 5 and streamed.column("n").to_pylist() == list(range(5))


def test_a_write_that_fails_halfway_leaves_no_dataset(lake_root):
    uri = lake.join(lake_root, "half")

    def batches():
        yield pa.record_batch({"id": ["a"], "n": [1]})
        raise OSError("disk went away mid-shard")

    schema = pa.schema([("id", pa.string()), ("n", pa.int64())])
    with pytest.raises(OSError):
        lake.write_shard(uri, "part-00000", batches(), schema=schema)
    assert not lake.exists(uri)
    assert lake.list_datasets(lake_root) == []
    with pytest.raises(lake.DatasetNotFound):
        lake.scan(uri)


def test_shards_without_a_manifest_are_invisible(lake_root):
    uri = lake.join(lake_root, "uncommitted")
    shard = lake.write_shard(uri, "part-00000", table(4))
    assert not lake.exists(uri)
    with pytest.raises(lake.DatasetNotFound):
        lake.shard_uris(uri)
    lake.commit(uri, [shard], kind="t")
    assert lake.exists(uri) and lake.manifest(uri).rows == 4
    assert lake.shard_uri(uri, "part-00000") == lake.join(uri, shard.path)


def test_a_version_under_another_config_never_replaces_a_named_file(lake_root):
    """A -> B -> A: the cached result of the first A still names bytes that are A's."""
    uri = lake.join(lake_root, "versions")
    a = lake.write_shard(uri, "part-00000", table(2))
    b = lake.write_shard(uri, "part-00000", table(2, start=5))
    assert a.path != b.path and lake.shard_name(a.path) == lake.shard_name(b.path) == "part-00000"
    lake.commit(uri, [b], kind="t")
    lake.commit(uri, [a], kind="t")  # back to A, from a cached result
    assert lake.scan(uri).collect()["n"].to_list() == [0, 1]


def test_commit_refuses_a_missing_shard(lake_root):
    uri = lake.join(lake_root, "broken")
    with pytest.raises(FileNotFoundError):
        lake.commit(uri, [lake.Shard("part-00009.0123456789abcdef.parquet", 1, 1)], kind="t")
    assert not lake.exists(uri)


def test_identity_follows_content_not_name(lake_root):
    uri = lake.join(lake_root, "ds")
    lake.write_dataset(uri, [table(2)], kind="t", config_hash="one")
    first = lake.identity(uri)
    assert lake.identity(uri) == first
    lake.write_dataset(uri, [table(3)], kind="t", config_hash="two")
    assert lake.identity(uri) != first


def test_identity_of_a_plain_file_changes_when_it_is_rewritten(lake_root):
    fs, path = lake.filesystem(lake.join(lake_root, "raw", "a.txt"))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, b"one")
    uri = lake.join(lake_root, "raw", "a.txt")
    before = lake.identity(uri)
    fs.pipe_file(path, b"two, longer")
    assert lake.identity(uri) != before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.text(max_size=40), st.integers(-(2**63), 2**63 - 1)), max_size=30))
def test_round_trip_is_exact_on_local_disk(tmp_path, rows):
    uri = str(tmp_path / "rt")
    t = pa.table(
        {"id": [r[0] for r in rows], "n": [r[1] for r in rows]},
        schema=pa.schema([("id", pa.string()), ("n", pa.int64())]),
    )
    lake.write_dataset(uri, [t], kind="t")
    back = pa.Table.from_batches(list(lake.iter_batches(uri)), schema=t.schema)
    assert back.equals(t)


def test_manifest_json_round_trip():
    m = lake.Manifest(kind="k", shards=[lake.Shard("a.parquet", 2, 10)], parents=["x"], stats={"kept": 2})
    assert lake.Manifest.from_json(m.to_json()) == m


def test_recommitting_identical_content_keeps_the_manifest_and_identity(lake_root):
    uri = lake.join(lake_root, "same")
    first = lake.write_dataset(uri, [table(3)], kind="t", config_hash="c")
    before = lake.identity(uri)
    again = lake.write_dataset(uri, [table(3)], kind="t", config_hash="c")
    assert again.created_at == first.created_at and lake.identity(uri) == before
    assert all(len(s.sha256) == 64 for s in again.shards)
    changed = lake.write_dataset(uri, [table(3, start=1)], kind="t", config_hash="c")
    assert changed.shards[0].sha256 != first.shards[0].sha256 and lake.identity(uri) != before


def test_shard_checksum_is_the_file_checksum(lake_root):
    import hashlib

    uri = lake.join(lake_root, "sum")
    shard = lake.write_shard(uri, "part-00000", table(5))
    fs, path = lake.filesystem(lake.join(uri, shard.path))
    assert hashlib.sha256(fs.cat_file(path)).hexdigest() == shard.sha256


def test_the_storage_layer_imports_no_prefect():
    """models/ (the trainer, the data loader) and tasks/ share one lake module, so it must be
    importable where Prefect is not: flows -> tasks -> models, never back."""
    probe = (
        "import sys; import models.lake, models.storage, models.data, models.checkpoint; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'tasks', 'flows')); "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_flow_run_is_recorded_as_passed_and_kept_by_an_identical_recommit(lake_root):
    uri = lake.join(lake_root, "runs")
    shard = lake.write_shard(uri, "part-00000", table(2))
    assert lake.commit(uri, [shard], kind="t", flow_run_id="run-1").flow_run_id == "run-1"
    assert lake.commit(uri, [shard], kind="t", flow_run_id="run-2").flow_run_id == "run-1", "same content, same record"
    assert lake.commit(uri, [shard], kind="t2", flow_run_id="run-3").flow_run_id == "run-3"
    assert lake.manifest(uri).flow_run_id == "run-3"
