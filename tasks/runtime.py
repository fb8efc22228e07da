"""Prefect conventions, in one place: cache keys, retries, result storage, runners, progress.

- Cache keys come from content identity, never from data: the task's name, a hash of the
  code it runs, a hash of its small parameters (configs, names), and the identity of each
  input URI (a dataset's manifest hash; a file's ETag or size+mtime). See `lake_task`.
- Retries are a policy named in the decorator: storage and network work retries with
  exponential backoff and jitter, but only on the errors that retrying can fix (I/O,
  connection, throttling), and a bug fails at once; training retries crashes and resumes.
- Task results are small (URIs and stats) and are persisted in the lake under
  `_prefect/results`, so a cache hit works from any worker that sees the lake.
- Tasks are mapped with `run_mapped` on the runner the config names: bounded threads by
  default, Dask to scale out.
- This is the one module of tasks/ that imports Prefect. The storage layer below it
  (models/lake.py) imports none: the flow run id a manifest records is read here
  (`flow_run_id`) and passed in.

docs/extending.md ("How a task is written") shows the convention on the tokenize stage.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field

from models import lake
from models.device import DEVICE_HELP, DTYPE_HELP, Placement, resolve
from models.storage import storage_options
from tasks.layout import Layout

log = logging.getLogger("crawl2chat")


# -- hashing -----------------------------------------------------------------------------


def stable_json(value: Any) -> str:
    """Canonical JSON for hashing: pydantic models by their fields, keys sorted."""

    def default(o: Any) -> Any:
        if isinstance(o, BaseModel):
            return o.model_dump(mode="json")
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot hash a {type(o).__name__} into a cache key: pass a URI instead")

    return json.dumps(value, sort_keys=True, default=default, separators=(",", ":"))


def digest(*parts: Any, length: int = 32) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else stable_json(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:length]


def config_hash(config: BaseModel | dict[str, Any]) -> str:
    return digest(config, length=16)


@functools.cache
def code_version(*modules: str) -> str:
    """A hash of the source of the given packages or modules (every .py file under them).

    Keys built on it change exactly when the code that produced a result changes, unlike
    Prefect's TASK_SOURCE, which sees only the task function's own body.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        mod = importlib.import_module(name)
        origin = Path(mod.__file__ or "")
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            h.update(str(path.relative_to(origin.parent.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# -- cache keys --------------------------------------------------------------------------


def content_key(inputs: Sequence[str] = (), code: Sequence[str] = ()) -> Callable[..., str]:
    """A `cache_key_fn` over content identity.

    `inputs` names the parameters that hold URIs (or lists of URIs) whose identity, not
    value, goes into the key; every other parameter is hashed as JSON (keep them small:
    configs, names, seeds). `code` names the packages whose source the result depends on.
    """

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        identities = {}
        for name in inputs:
            value = parameters.get(name)
            uris = value if isinstance(value, (list, tuple)) else [value]
            identities[name] = [lake.identity(u) for u in uris if u is not None]
        rest = {k: v for k, v in parameters.items() if k not in inputs}
        task_name = context.task.name if context else ""
        return digest(task_name, code_version(*code) if code else "", rest, identities)

    return key


# -- retries -----------------------------------------------------------------------------


# S3 answers a request it will never accept with a 3xx or 4xx code; these few are the
# exceptions, faults of the transfer or the moment that the same request can get past.
TRANSIENT_S3_CODES = frozenset(
    {
        "RequestTimeout",
        "IncompleteBody",
        "BadDigest",
        "OperationAborted",
        "SlowDown",
        "Throttling",
        "RequestLimitExceeded",
    }
)


def _s3_error(exc: BaseException) -> tuple[str, int] | None:
    """(S3's error code, HTTP status) of a botocore ClientError in `exc`'s chain of causes:
    s3fs re-raises S3's errors as OSErrors (InvalidBucketName as errno 22) with the
    ClientError as their cause. Only causes (`raise ... from`), not the error being handled
    when another was raised: a connection reset while s3fs handles a 404 is still a reset."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return str(response["Error"].get("Code", "")), int(status)
        exc = exc.__cause__
    return None


def _retryable(exc: BaseException) -> bool:
    """Errors that a later attempt can fix: storage and network faults, throttling. S3's
    refusals (invalid or missing bucket, access denied, another region: any answer below 500
    but the transient few) fail at once with S3's own message instead of being retried."""
    if isinstance(
        exc, (lake.DatasetNotFound, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
    ):
        return False
    s3 = _s3_error(exc)
    if s3 is not None:
        code, status = s3
        return code in TRANSIENT_S3_CODES or status >= 500 or not status
    if isinstance(exc, (OSError, ConnectionError, TimeoutError, EOFError)):
        return True
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    # botocore / aiobotocore / aiohttp errors, without importing them here.
    return module.startswith(("botocore", "aiobotocore", "aiohttp", "urllib3")) or name in (
        "ClientError",
        "SlowDown",
        "ServiceUnavailable",
    )


def retry_on_storage_errors(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # the failure's exception, re-raised by .result()
        return _retryable(exc)
    return False


STORAGE_RETRIES: dict[str, Any] = dict(
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_storage_errors,
)


def retry_on_crashes(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes (a lost node, an NCCL or storage error); not mistakes a retry repeats."""
    try:
        state.result()
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, KeyError):
        return False
    except Exception:
        return True
    return False


# A training run resumes from its newest checkpoint, so a retry after a crash loses at most
# the steps since then; a fixed short wait, since what crashed is a node, not the storage.
CRASH_RETRIES: dict[str, Any] = dict(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_crashes)


def lake_task(
    fn: Callable[..., Any] | None = None,
    *,
    inputs: Sequence[str] = (),
    code: Sequence[str] = (),
    retries: Mapping[str, Any] | None = STORAGE_RETRIES,
    **task_kwargs: Any,
) -> Any:
    """`@task` with the project's conventions: content-identity cache key, persisted JSON
    result, retries. Tasks so decorated must return small JSON values.

    `retries` is a policy: STORAGE_RETRIES (the default: storage and network errors a retry
    can fix), CRASH_RETRIES (training that resumes from its checkpoints) or None (a task
    whose failure a retry would only repeat)."""
    if isinstance(retries, bool):
        raise TypeError("lake_task(retries=...) takes a policy (STORAGE_RETRIES, CRASH_RETRIES) or None, not a bool")

    def wrap(f: Callable[..., Any]) -> Any:
        options: dict[str, Any] = dict(
            cache_key_fn=content_key(inputs, code),
            persist_result=True,
            result_serializer="json",
            cache_result_in_memory=False,
        )
        options.update(retries or {})
        options.update(task_kwargs)
        return task(**options)(f)

    return wrap(fn) if fn is not None else wrap


def flow_run_id() -> str | None:
    """The id of the flow run this code runs in (a manifest's and a checkpoint's `flow_run_id`),
    or None outside one: a plain call from a notebook or a test. The storage layer
    (models/lake.py) never asks Prefect; its callers pass this in."""
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # no Prefect context to read
        return None


# -- result storage ----------------------------------------------------------------------

_blocks_lock = threading.Lock()


@functools.cache
def result_storage(lake_root: str) -> Path | str:
    """Where Prefect persists task results for a lake: inside it, `_prefect/results`.

    Local disk takes a path. S3 needs a saved RemoteFileSystem block (Prefect resolves
    blocks server-side); it is saved once per lake and holds no credentials.
    """
    root = lake.normalize(lake_root)
    results = Layout(root).task_results()
    if not lake.is_remote(root):
        return Path(results)
    from prefect.filesystems import RemoteFileSystem

    settings = storage_options(root)
    name = "crawl2chat-results-" + digest(root, settings, length=12)
    with _blocks_lock:
        RemoteFileSystem(basepath=results, settings=settings).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def in_lake(lake_root: str, *tasks_: Any) -> Any:
    """The given tasks, persisting their results in the lake. One task in, one out."""
    storage = result_storage(lake_root)
    bound = tuple(t.with_options(result_storage=storage) for t in tasks_)
    return bound[0] if len(bound) == 1 else bound


# -- configs -----------------------------------------------------------------------------


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PlacedConfig(StageConfig):
    """A stage that runs a model: where and in what precision (models/device.py's rule)."""

    device: str = Field("auto", description=DEVICE_HELP)
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description=DTYPE_HELP)

    def placement(self) -> Placement:
        return resolve(self.device, self.dtype)


# -- task runners ------------------------------------------------------------------------


class RunnerConfig(StageConfig):
    """Which task runner executes mapped tasks.

    threads: a bounded pool in the flow's process (the default; right for I/O and for
    code that releases the GIL). dask: `address` of an existing cluster, or a temporary
    local cluster of `max_workers` processes.
    """

    kind: Literal["threads", "dask"] = "threads"
    max_workers: int = 2
    address: str | None = None
    threads_per_worker: int = 1


def task_runner(config: RunnerConfig) -> Any:
    if config.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    if config.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address:
            return DaskTaskRunner(address=config.address)
        return DaskTaskRunner(
            cluster_kwargs=dict(
                n_workers=config.max_workers,
                threads_per_worker=config.threads_per_worker,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
            )
        )
    raise ValueError(f"unknown runner kind {config.kind!r}")


# -- the gpu concurrency limit -----------------------------------------------------------

GPU_LIMIT = "gpu"


def ensure_concurrency_limit(name: str, slots: int) -> bool:
    """Create the global concurrency limit `name` with `slots` unless it exists; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        except ObjectAlreadyExists:  # another run created it meanwhile
            return False
    log.warning("created the %r concurrency limit with %d slot(s): none existed", name, slots)
    return True


def gpu_slot(slots_if_missing: int = 1) -> Any:
    """A slot of the `gpu` global concurrency limit, held while a training run uses the GPUs.

    Acquisition is strict, so training never runs unlimited because the limit is missing.
    Under a deployment a missing limit is an error (`crawl2chat deploy` creates it with the
    size the operator chose); a local run creates it with `slots_if_missing` first. Lease
    renewal failures do not kill a long run (the slot may then lapse, never the training).
    """
    from prefect.concurrency.sync import concurrency
    from prefect.runtime import deployment

    if deployment.id is None:
        ensure_concurrency_limit(GPU_LIMIT, slots_if_missing)
    return concurrency(GPU_LIMIT, occupy=1, strict=True, raise_on_lease_renewal_failure=False)


# -- progress ----------------------------------------------------------------------------


class Progress:
    """Progress of one stage, shown in the terminal and as a Prefect progress artifact."""

    def __init__(self, total: int, description: str, key: str | None = None):
        self.total = max(total, 1)
        self.done = 0
        self.description = description
        self._artifact = None
        self._last_pct = -1.0
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() or TaskRunContext.get():
                self._artifact = create_progress_artifact(0.0, key=key, description=description)
        except Exception as exc:  # progress is a view, never a reason to fail
            log.debug("no progress artifact: %s", exc)
        self._bar = None
        if sys.stderr.isatty() and not os.environ.get("CRAWL2CHAT_NO_BAR"):
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=False)
            self._bar.start()
            self._bar_task = self._bar.add_task(description, total=self.total)

    def advance(self, n: int = 1) -> None:
        self.done += n
        pct = 100.0 * self.done / self.total
        if self._bar is not None:
            self._bar.update(self._bar_task, completed=self.done)
        if self._artifact is not None and (pct - self._last_pct >= 5 or self.done >= self.total):
            self._last_pct = pct
            with contextlib.suppress(Exception):
                from prefect.artifacts import update_progress_artifact

                update_progress_artifact(self._artifact, min(pct, 100.0))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def progress(total: int, description: str, key: str | None = None) -> Iterator[Progress]:
    bar = Progress(total, description, key)
    try:
        yield bar
    finally:
        bar.close()


def run_mapped(
    task_: Any, runner: RunnerConfig, description: str, key: str | None = None, **parameters: Any
) -> list[Any]:
    """Map `task_` over `parameters` on the runner the config names, and gather the results.

    The runner is entered here, inside the flow run, so one flow (and one deployment) runs on
    threads, a local Dask cluster or an existing cluster, as its parameters say; the task runs
    still belong to the calling flow run in the UI. Wrap constant arguments in `unmapped`.
    """
    with task_runner(runner) as active:
        return gather(active.map(task_, parameters), description, key)


def gather(futures: Iterable[Any], description: str, key: str | None = None) -> list[Any]:
    """Results of mapped futures in submission order, advancing a progress bar as each ends."""
    from prefect.futures import as_completed

    futures = list(futures)
    with progress(len(futures), description, key) as bar:
        for _ in as_completed(futures):
            bar.advance()
    return [f.result() for f in futures]


# -- assets ------------------------------------------------------------------------------


def asset_key(uri: str) -> str:
    """A Prefect asset key for a lake URI (local paths become file:// URIs)."""
    uri = lake.normalize(uri)
    return uri if lake.is_remote(uri) else "file://" + uri


def _declare_asset(uri: str, rows: int | None, kind: str) -> str:
    from prefect.assets import add_asset_metadata

    add_asset_metadata(asset_key(uri), {"rows": rows, "kind": kind})
    return uri


def declare(*uris: str) -> None:
    """Declare committed datasets or checkpoints as Prefect assets, upstream of their parents.

    Each becomes a materialization event whose related assets are the manifest's parents,
    so the server records lineage; `crawl2chat lineage` reads the same parents from the lake.
    """
    from prefect.assets import materialize
    from prefect.cache_policies import NO_CACHE

    for uri in uris:
        found = lake.manifest(uri)
        task_ = materialize(
            asset_key(uri),
            asset_deps=[asset_key(p) for p in found.parents],
            cache_policy=NO_CACHE,
            name=f"asset {found.kind}",
        )(_declare_asset)
        task_(uri, found.rows, found.kind)
