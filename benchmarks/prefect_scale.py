"""Orchestration at crawl scale: 10,000 lake tasks through a real Prefect server on Dask.

    python -m benchmarks.prefect_scale [--tasks 10000] [--workers 2] [--batch 1]

A Common Crawl snapshot is ~90,000 WARC files; curate maps one task per file (or per batch
of files). This measures what that fan-out asks of Prefect, with the work itself made
negligible so that only orchestration is timed:

- a real `prefect server start` (SQLite) on a free loopback port, with its own PREFECT_HOME
  in a temporary folder (flows/server.py starts it, as `crawl2chat server` does);
- one flow that maps `--tasks` lake tasks (tasks/runtime.py's `lake_task`: content-identity
  cache key, JSON result persisted in the lake, storage retries) on the Dask runner with
  `--workers` worker processes, as `run_mapped` does in every data flow; each task
  writes a one-row Parquet shard and returns its small dict, as a real lake task does;
- measured: the Dask cluster's start-up, then wall time and task runs/s of the mapping, the server's CPU seconds (its whole
  process tree) and resident memory, the flow process's peak RSS, the SQLite database's size
  (with its WAL) per task run, and whether any task run is lost: the server's count of this
  flow run's task runs (and of those COMPLETED) against the tasks mapped, polled until it
  stops changing (states arrive as events, after the flow returns).

The figures and what they mean for a snapshot (how many WARC files a task should take) are
in docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def tree_cpu_seconds(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of a process and its descendants."""
    import psutil

    root = psutil.Process(pid)
    cpu, rss = 0.0, 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


def db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("prefect.db*"))


def count_task_runs(url: str, flow_run_id: str, state: str | None = None) -> int:
    """The server's count of a flow run's task runs (in `state`), from its REST API."""
    body: dict = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    if state:
        body["task_runs"] = {"state": {"type": {"any_": [state]}}}
    request = urllib.request.Request(
        f"{url}/task_runs/count",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(json.loads(response.read()))


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def run(tasks: int, workers: int, threads: int, batch: int, home: Path, lake_root: Path) -> dict:
    """Start the server, map the tasks, count what the server recorded."""
    from flows import server

    with socket.socket() as s:  # a free loopback port of our own
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = server.start(home=home, port=port)
    print(f"Prefect server at {url} (PREFECT_HOME {home})", flush=True)
    os.environ["PREFECT_API_URL"] = url
    pid = int((home / "server.pid").read_text())
    try:
        return _measure(url, pid, tasks, workers, threads, batch, home, lake_root)
    finally:
        server.stop(home)


def touch(out: str, first: int, count: int) -> dict:
    """A lake task with no work: one small shard for `count` pretend WARC files."""
    import pyarrow as pa

    from models import lake

    table = pa.table({"warc": [f"file-{i:06d}" for i in range(first, first + count)], "bytes": [0] * count})
    shard = lake.write_shard(out, f"part-{first:06d}", table)
    return {"path": shard.path, "rows": shard.rows}


def fan_out(root: str, tasks: int, workers: int, threads: int, batch: int) -> dict:
    """The flow: map `tasks` lake tasks on a local Dask cluster; time the start-up and the mapping."""
    from prefect import unmapped
    from prefect.runtime import flow_run

    from models import lake
    from tasks.runtime import RunnerConfig, gather, in_lake, lake_task, task_runner

    out = lake.join(root, "scale")
    task_ = in_lake(root, lake_task(task_run_name="files {first}")(touch))
    started = time.perf_counter()
    timing: dict = {}
    try:
        # run_mapped's steps, timed apart: starting the Dask cluster, then the mapping itself.
        with task_runner(RunnerConfig(kind="dask", max_workers=workers, threads_per_worker=threads)) as active:
            ready = time.perf_counter()
            futures = active.map(
                task_, dict(out=unmapped(out), first=[i * batch for i in range(tasks)], count=unmapped(batch))
            )
            results = gather(futures, f"{tasks} lake tasks")
            timing.update(
                seconds=time.perf_counter() - ready,
                startup=ready - started,
                results=len(results),
                rows=sum(r["rows"] for r in results),
            )
    except TimeoutError:  # stopping the cluster on a loaded machine can outlast Dask's close timeout
        if "seconds" not in timing:
            raise
        timing["dask_close_timed_out"] = True
    return {"flow_run_id": str(flow_run.id), **timing}


def _measure(
    url: str, server_pid: int, tasks: int, workers: int, threads: int, batch: int, home: Path, lake_root: Path
) -> dict:
    from prefect import flow

    cpu_before, _ = tree_cpu_seconds(server_pid)
    db_before = db_bytes(home)
    wall = time.perf_counter()
    own_before, _ = tree_cpu_seconds(os.getpid())
    outcome = flow(name="prefect-scale", log_prints=True)(fan_out)(str(lake_root), tasks, workers, threads, batch)
    own_after, _ = tree_cpu_seconds(os.getpid())  # the flow process and its Dask workers
    flow_seconds = time.perf_counter() - wall

    # The server learns task-run states from events after the fact: poll until the counts settle.
    counts, settled_after, last_change = (-1, -1), 0.0, time.perf_counter()
    while time.perf_counter() - last_change < 20 and time.perf_counter() - wall < flow_seconds + 600:
        now = (count_task_runs(url, outcome["flow_run_id"]), count_task_runs(url, outcome["flow_run_id"], "COMPLETED"))
        if now != counts:
            counts, last_change = now, time.perf_counter()
            settled_after = last_change - wall - flow_seconds
        if counts == (tasks, tasks):
            break
        time.sleep(2)
    cpu_after, server_rss = tree_cpu_seconds(server_pid)
    db_after = db_bytes(home)
    return {
        "tasks": tasks,
        "workers": workers,
        "threads_per_worker": threads,
        "files_per_task": batch,
        "cluster_start_s": round(outcome["startup"], 1),
        "map_seconds": round(outcome["seconds"], 1),
        "flow_seconds": round(flow_seconds, 1),
        "task_runs_per_s": round(tasks / outcome["seconds"], 1),
        "server_task_runs": counts[0],
        "server_completed": counts[1],
        "lost": tasks - counts[1],
        "settled_after_flow_s": round(max(settled_after, 0.0), 1),
        "server_cpu_s": round(cpu_after - cpu_before, 1),
        "server_cpu_ms_per_task": round(1000 * (cpu_after - cpu_before) / tasks, 2),
        "client_cpu_ms_per_task": round(1000 * (own_after - own_before) / tasks, 1),
        "server_rss_mb": round(server_rss / 2**20),
        "flow_peak_rss_mb": round(peak_rss_bytes() / 2**20),
        "db_mb": round(db_after / 2**20, 1),
        "db_kb_per_task": round((db_after - db_before) / 1024 / tasks, 1),
        "rows_written": outcome["rows"],
        "dask_close_timed_out": outcome.get("dask_close_timed_out", False),
        "load_average": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per Dask worker")
    parser.add_argument("--batch", type=int, default=1, help="pretend WARC files per task (rows of its shard)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prefect-scale-") as tmp:
        home = Path(tmp) / "prefect-home"
        home.mkdir()
        # This process's Prefect settings and local storage live in the temporary home too,
        # so the benchmark never touches another server's or user's files.
        os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", CRAWL2CHAT_NO_BAR="1")
        result = run(args.tasks, args.workers, args.threads, args.batch, home, Path(tmp) / "lake")
    print(json.dumps(result, indent=2))
    print(
        f"{result['tasks']:,} task runs in {result['map_seconds']} s = {result['task_runs_per_s']} task runs/s on {args.workers} Dask "
        f"workers x {args.threads} threads; flow + workers {result['client_cpu_ms_per_task']} ms CPU per task run, server {result['server_cpu_ms_per_task']} ms CPU per task run, {result['db_kb_per_task']} KB of database per "
        f"task run; lost: {result['lost']} (server recorded {result['server_task_runs']}, completed {result['server_completed']})"
    )


if __name__ == "__main__":
    main()
