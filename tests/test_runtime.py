"""Prefect conventions against the real Prefect test server: cache hits on content identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow

from models import lake
from tasks.runtime import (
    CRASH_RETRIES,
    STORAGE_RETRIES,
    RunnerConfig,
    _retryable,
    code_version,
    content_key,
    flow_run_id,
    in_lake,
    lake_task,
    retry_on_crashes,
    retry_on_storage_errors,
    task_runner,
)

CALLS: list[str] = []


@lake_task(inputs=("src",), code=("models.lake",))
def count_lines(src: str, note: str) -> dict:
    CALLS.append(src)
    fs, path = lake.filesystem(src)
    return {"lines": fs.cat_file(path).count(b"\n"), "note": note}


@flow
def count_flow(lake_root: str, src: str, note: str = "x") -> dict:
    return in_lake(lake_root, count_lines)(src, note)


def test_cache_hit_on_same_input_and_work_on_changed_input(prefect_server, tmp_path):
    root = str(tmp_path / "lake")
    src = tmp_path / "input.txt"
    src.write_text("a\nb\n")
    CALLS.clear()
    assert count_flow(root, str(src)) == {"lines": 2, "note": "x"}
    assert count_flow(root, str(src)) == {"lines": 2, "note": "x"}
    assert len(CALLS) == 1, "same input identity must be a cache hit"
    assert (Path(root) / "_prefect" / "results").is_dir(), "results persist in the lake"

    src.write_text("a\nb\nc\n")  # new content: new size and mtime, so a new identity
    assert count_flow(root, str(src)) == {"lines": 3, "note": "x"}
    assert len(CALLS) == 2
    assert count_flow(root, str(src), note="y")["note"] == "y"
    assert len(CALLS) == 3, "a changed small parameter is a changed key"


def test_a_commit_records_the_flow_run_that_made_it(prefect_server, tmp_path):
    """The storage layer knows no Prefect: the flow run id reaches the manifest as an argument,
    from a task of the flow as from the flow's own body."""
    import pyarrow as pa

    def write(uri: str) -> lake.Manifest:
        shard = lake.write_shard(uri, "part-00000", pa.table({"id": ["x"]}))
        return lake.commit(uri, [shard], kind="t", flow_run_id=flow_run_id())

    in_task = lake_task(retries=None, persist_result=False, cache_key_fn=None)(lambda uri: write(uri).flow_run_id)

    @flow
    def make(root: str) -> str | None:
        in_task(f"{root}/by-task")
        write(f"{root}/by-flow")
        return flow_run_id()

    root = str(tmp_path / "lake")
    run_id = make(root)
    assert run_id is not None
    assert lake.manifest(f"{root}/by-task").flow_run_id == lake.manifest(f"{root}/by-flow").flow_run_id == run_id
    assert flow_run_id() is None, "outside a flow run there is none"


def test_key_depends_on_identity_and_code_not_on_data(tmp_path):
    key = content_key(inputs=("src",), code=("models.lake",))
    src = tmp_path / "f"
    src.write_text("hello")
    k1 = key(None, {"src": str(src), "n": 1})
    assert k1 == key(None, {"src": str(src), "n": 1})
    assert k1 != key(None, {"src": str(src), "n": 2})
    assert "/" not in k1
    other = content_key(inputs=("src",), code=("tasks.runtime",))
    assert other(None, {"src": str(src), "n": 1}) != k1
    assert code_version("models.lake") == code_version("models.lake")


def test_retries_are_a_named_policy():
    def work(uri: str) -> dict:
        return {}

    storage, crash, none = (lake_task(retries=policy)(work) for policy in (STORAGE_RETRIES, CRASH_RETRIES, None))
    assert lake_task(work).retries == storage.retries == 4 and storage.retry_condition_fn is retry_on_storage_errors
    assert crash.retries == 2 and crash.retry_condition_fn is retry_on_crashes
    assert none.retries == 0
    with pytest.raises(TypeError, match="a policy"):
        lake_task(retries=True)


def test_only_storage_errors_are_retried():
    assert _retryable(ConnectionResetError())
    assert _retryable(TimeoutError())
    assert not _retryable(ValueError("a bug"))
    assert not _retryable(lake.DatasetNotFound("missing"))
    assert not _retryable(KeyError("x"))


def s3_refusal(code: str, status: int, as_errno: int) -> OSError:
    """What s3fs raises for an S3 error: an OSError with botocore's ClientError as its cause."""
    from botocore.exceptions import ClientError

    cause = ClientError(
        {"Error": {"Code": code, "Message": "S3 says no"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )
    exc = OSError(as_errno, "S3 says no")
    exc.__cause__ = cause
    return exc


def test_s3s_refusals_fail_at_once_its_transient_4xx_and_5xx_are_retried():
    import errno

    assert not _retryable(s3_refusal("InvalidBucketName", 400, errno.EINVAL))
    assert not _retryable(s3_refusal("AuthorizationHeaderMalformed", 400, errno.EINVAL))
    assert not _retryable(s3_refusal("PermanentRedirect", 301, errno.EREMCHG))  # the bucket is in another region
    assert _retryable(s3_refusal("IncompleteBody", 400, errno.EINVAL))  # the body was cut in transit
    assert _retryable(s3_refusal("RequestTimeout", 400, errno.EINVAL))
    assert _retryable(s3_refusal("SlowDown", 503, errno.EBUSY))
    assert _retryable(s3_refusal("InternalError", 500, errno.EIO))
    assert _retryable(OSError(errno.EINVAL, "no S3 response behind it"))  # local or transport: as before
    try:  # a reset while handling S3's 404 (s3fs does that dance) is still a reset
        try:
            raise s3_refusal("NoSuchKey", 404, errno.ENOENT).__cause__
        except Exception:
            raise ConnectionResetError("reset by peer")  # noqa: B904 (the 404 is context, not cause)
    except ConnectionResetError as reset:
        assert _retryable(reset)


def test_runner_from_config_is_bounded():
    runner = task_runner(RunnerConfig(kind="threads", max_workers=3))
    assert runner._max_workers == 3
    with pytest.raises(ValueError):
        task_runner(RunnerConfig.model_construct(kind="nope"))


def test_declared_datasets_become_asset_events(prefect_server, tmp_path):
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from tasks.runtime import asset_key, declare

    parent = str(tmp_path / "warcs" / "a.warc.gz")
    uri = str(tmp_path / "lake" / "ds")
    lake.write_dataset(uri, [__import__("pyarrow").table({"id": ["x", "y"]})], kind="test.assets", parents=[parent])

    @flow
    def make_asset():
        declare(uri)

    make_asset()
    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.asset.materialization.succeeded"]),
        resource=EventResourceFilter(id=[asset_key(uri)]),
    )
    found = []
    with get_client(sync_client=True) as client:
        for _ in range(40):  # events reach the server asynchronously
            found = client.read_events(filter=wanted, limit=10).events
            if found:
                break
            time.sleep(0.5)
    assert found, "no materialization event for the dataset"
    related = {r.id for r in found[0].related}
    assert asset_key(parent) in related
    assert found[0].payload.get("rows") == 2


def test_a_stage_hands_back_its_result_before_its_run_is_completed(prefect_server, tmp_path):
    """A parent polls a deployment run's state, then reads what it handed back: the file must
    be there by the time the server has the run Completed. Prefect calls completion hooks only
    after that, so the hook here sees what a polling parent would."""
    from flows.dispatch import _result_uri, hand_back
    from models.storage import read_json

    seen: dict[str, object] = {}

    def on_completed(flow_, flow_run, state):
        assert state.is_completed()
        seen["value"] = read_json(_result_uri(str(tmp_path), flow_run.id))
        seen["run"] = str(flow_run.id)

    @flow(on_completion=[on_completed])
    def stage(n: int) -> dict:
        return hand_back(str(tmp_path), {"n": n, "uri": f"{tmp_path}/x"})

    assert stage(3) == {"n": 3, "uri": f"{tmp_path}/x"}
    assert seen["value"] == {"n": 3, "uri": f"{tmp_path}/x"}
    assert Path(_result_uri(str(tmp_path), seen["run"])).is_file()
    assert hand_back(str(tmp_path), 5) == 5  # outside a flow run: nothing to record, the value passes
