"""The pipeline under stress: run it in or out of process, kill it, and audit what it left.

Shared by tests/test_reliability_*.py and benchmarks/chaos.py:

- `source_crawl`: the deterministic sample crawl, written once outside any lake under test, so
  every run reads the same WARC URIs and curated shards (which record their source URI) can be
  compared byte for byte across lakes.
- `run_pipeline` / `python -m tests.support.stress --lake L WARC...`: the pipeline's data stages, the
  real curate (with dedup), tokenizer and tokenize flows with the tiny preset, in this process
  or as a subprocess (which needs PREFECT_API_URL).
- `snapshot`: every committed dataset of a lake as {dataset: {shard: sha256 of its bytes}},
  checking each shard's bytes against the checksum its manifest recorded.
- `audit`: documents lost and duplicated, by WARC-Record-ID, from the crawl's ground truth
  through curated clean + removed and on into the token splits.
- `start` / `kill_after`: a pipeline subprocess and a kill -9 at a seeded random moment of its
  flow run; `train_and_kill` / `train_to_end` the same for `python -m models.train`.
- `peak_rss`: a function's peak memory in a fresh process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Small enough for a test, big enough for every stage to have several shards and tasks.
PAGES, FILES = 40, 3
# Settings that make a run's output depend on its input alone: a per-document extraction
# limit far above any page's time, so a loaded machine cannot turn a page into a timeout.
OVERRIDES: dict[str, Any] = {
    "curate.extract.timeout_s": 60.0,
    "tokenizer.vocab_size": 512,
    "tokenizer.name": "bpe-stress",
}


# -- the crawl and the run ---------------------------------------------------------------


def source_crawl(root: str, pages: int = PAGES, files: int = FILES, seed: int = 0) -> list[str]:
    """Write the sample crawl under `root` (local or s3://) without Prefect; its WARC URIs."""
    from tasks import sample_crawl as crawl
    from tasks.config import SampleCrawlConfig

    config = SampleCrawlConfig(pages=pages, files=files, seed=seed)
    results = [crawl.write_warc_file.fn(root, config, i) for i in range(files)]
    crawl.commit_crawl.fn(root, config, results)
    return sorted(r["warc"] for r in results)


def truth_uri(warcs: list[str]) -> str:
    """The ground-truth dataset beside a sample crawl's WARC files."""
    from models import lake

    return lake.join(warcs[0].rsplit("/", 1)[0], "truth")


def pipeline_config(lake_root: str, extractor: str = "resiliparse", **overrides: Any) -> Any:
    from tasks.config import load_config

    return load_config(
        "tiny", {**OVERRIDES, "lake.root": lake_root, "curate.extract.extractor": extractor, **overrides}
    )


def run_pipeline(lake_root: str, warcs: list[str], extractor: str = "resiliparse", **overrides: Any) -> dict[str, Any]:
    """Curate `warcs` (dedup included), train the tokenizer and tokenize, into `lake_root`,
    in this process: the pipeline's flows as flows/pipeline.py calls them, without the
    stages after tokenize."""
    from flows.curate import curate
    from flows.tokenize import tokenize
    from flows.tokenizer import tokenizer

    cfg = pipeline_config(lake_root, extractor, **overrides)
    out = {
        "curate": curate(
            warcs=warcs, lake=cfg.lake, config=cfg.curate, dedup=cfg.dedup, runner=cfg.runner, quality=cfg.quality
        )
    }
    clean, crawl = out["curate"]["clean_uri"], out["curate"]["crawl"]
    out["tokenizer"] = tokenizer(lake=cfg.lake, config=cfg.tokenizer, clean=clean, holdout=cfg.tokenize.val_fraction)
    out["tokenize"] = tokenize(
        lake=cfg.lake,
        config=cfg.tokenize,
        tokenizer=out["tokenizer"]["uri"],
        clean=clean,
        crawl=crawl,
        runner=cfg.runner,
    )
    return out


def command(lake_root: str, warcs: list[str], extractor: str = "resiliparse") -> list[str]:
    return [sys.executable, "-m", "tests.support.stress", "--lake", lake_root, "--extractor", extractor, *warcs]


def start(
    lake_root: str, warcs: list[str], extractor: str = "resiliparse", env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The pipeline as a subprocess (its own session, so kills reach no one else)."""
    env = {**os.environ, **(env or {}), "CRAWL2CHAT_NO_BAR": "1", "PYTHONPATH": str(REPO)}
    if not env.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = PREFECT_API_URL.value() or ""  # the prefect_server fixture's, in tests
    if not env["PREFECT_API_URL"]:
        raise RuntimeError("a pipeline subprocess needs a Prefect server: set PREFECT_API_URL")
    return subprocess.Popen(
        command(lake_root, warcs, extractor),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


class Output:
    """Collects a subprocess's output lines on a thread; `seen` is set once `marker` appears."""

    def __init__(self, proc: subprocess.Popen, marker: str = "Beginning flow run"):
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.marker = marker
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)
            if self.marker in line:
                self.seen.set()
        self.seen.set()  # the process ended without the marker: stop waiting for it

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def kill_after(proc: subprocess.Popen, delay_s: float, timeout_s: float = 300) -> dict[str, Any]:
    """kill -9 `proc` `delay_s` seconds after its flow run began (if it is still running by
    then). Returns whether it was killed, and the worker processes it left behind."""
    import psutil

    out = Output(proc)
    if not out.seen.wait(timeout_s):
        proc.kill()
        raise TimeoutError(f"no flow run began in {timeout_s}s:\n{out.text()[-3000:]}")
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    killed = proc.poll() is None
    orphans: list[int] = []
    if killed:
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)  # the pipeline process only: its workers must notice
        proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=15)
        orphans = [p.pid for p in alive]
        for p in alive:  # clean up after a failed check; the caller asserts on `orphans`
            p.kill()
    else:
        proc.wait()
    return {"killed": killed, "returncode": proc.returncode, "orphans": orphans, "output": out.text()}


def finish(proc: subprocess.Popen, timeout_s: float = 600) -> dict[str, Any]:
    """Wait for a pipeline subprocess; its exit code and output (raises on a failed run)."""
    out = Output(proc)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    text = out.text()
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline exited with {proc.returncode}:\n{text[-4000:]}")
    return {"returncode": proc.returncode, "output": text}


# -- training ----------------------------------------------------------------------------


def train_command(model: Any, train: Any, spec: Any, resume: bool) -> list[str]:
    """`python -m models.train` on a config file (beside the run folder) holding the model and
    training configs (dataclasses) and the RunSpec."""
    import dataclasses

    path = f"{spec.out}.json"
    body = {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train), "run": dataclasses.asdict(spec)}
    with open(path, "w") as f:
        json.dump(body, f)
    return [sys.executable, "-m", "models.train", "--config", path, *(["--resume"] if resume else [])]


def train_and_kill(model: Any, train: Any, spec: Any, at_step: int, resume: bool) -> dict[str, Any]:
    """Train `spec` in a subprocess and kill -9 it as soon as it logs step `at_step` (a
    multiple of `train.log_every`): between two checkpoints, or while one is being written.
    Returns whether it was killed and the steps of the complete checkpoints it left."""
    from models import checkpoint

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        train_command(model, train, spec, resume),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Output(proc, marker=f"step {at_step}/{train.steps} ")
    if not out.seen.wait(600):
        proc.kill()
        raise TimeoutError(out.text()[-3000:])
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    text = out.text()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"training exited with {proc.returncode}:\n{text[-3000:]}")
    resumed = re.search(r"resumed from \S+ at step (\d+)", text)
    return {
        "killed": proc.returncode == -signal.SIGKILL,
        "saved": checkpoint.committed_steps(spec.out),
        "resumed_at": int(resumed.group(1)) if resumed else None,
    }


def train_to_end(model: Any, train: Any, spec: Any) -> int:
    """Resume `spec` in a subprocess and let it finish; the step it resumed from."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        train_command(model, train, spec, resume=True), cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return int(re.search(r"resumed from \S+ at step (\d+)", done.stdout).group(1))


# -- audits ------------------------------------------------------------------------------


def snapshot(root: str) -> dict[str, dict[str, str]]:
    """{dataset path under root: {shard path: sha256 of the shard's bytes}} for every
    committed dataset; a shard whose bytes disagree with its manifest's checksum is an error."""
    from models import lake

    out: dict[str, dict[str, str]] = {}
    base = lake.normalize(root).rstrip("/") + "/"
    for uri in lake.list_datasets(root):
        found = lake.manifest(uri)
        shards = {}
        for shard in found.shards:
            fs, path = lake.filesystem(lake.join(uri, shard.path))
            digest = hashlib.sha256(fs.cat_file(path)).hexdigest()
            if shard.sha256 and shard.sha256 != digest:
                raise AssertionError(f"{uri}/{shard.path}: bytes do not match the manifest's checksum")
            shards[shard.path] = digest
        out[lake.normalize(uri).removeprefix(base)] = shards
    return out


def ids(uri: str, column: str = "id") -> list[str]:
    """One column of a dataset (document ids by default), streamed."""
    from models import lake

    return [i for batch in lake.iter_batches(uri, columns=[column]) for i in batch.column(column).to_pylist()]


def audit(
    lake_root: str, truth_uri: str, crawl: str = "sample", tokenizer: str = OVERRIDES["tokenizer.name"]
) -> dict[str, int]:
    """Documents lost and duplicated on the way from the crawl to the token datasets.

    Every response record of the crawl must be in curated clean or removed exactly once, and
    every clean document in the train or validation tokens exactly once (an empty text, which
    tokenize skips and counts, is allowed to be missing there).
    """
    from models import lake

    truth = set(ids(truth_uri, "record_id"))
    curated = ids(lake.join(lake_root, "curated", crawl, "clean")) + ids(
        lake.join(lake_root, "curated", crawl, "removed")
    )
    clean = set(ids(lake.join(lake_root, "curated", crawl, "clean")))
    tokens_root = lake.join(lake_root, "tokens", tokenizer, crawl)
    tokens = ids(lake.join(tokens_root, "train")) + ids(lake.join(tokens_root, "val"))
    skipped = sum(lake.manifest(lake.join(tokens_root, s)).stats.get("skipped_empty", 0) for s in ("train", "val"))
    return {
        "documents": len(truth),
        "lost": len(truth - set(curated)) + max(0, len(clean - set(tokens)) - skipped),
        "duplicated": (len(curated) - len(set(curated))) + (len(tokens) - len(set(tokens))),
        "unexpected": len(set(curated) - truth) + len(set(tokens) - clean),
    }


def differences(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[str]:
    """What differs between two snapshots, readably (empty when identical)."""
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out.append(f"{name}: only in {'first' if name in a else 'second'}")
        elif a[name] != b[name]:
            changed = sorted(k for k in set(a[name]) | set(b[name]) if a[name].get(k) != b[name].get(k))
            out.append(f"{name}: shards differ {changed}")
    return out


# -- memory ------------------------------------------------------------------------------


def peak_rss(target: str, *args: str, timeout_s: float = 600) -> dict[str, Any]:
    """Run `python -m tests.support.stress measure TARGET ARGS` (TARGET is `module:function`) in a
    fresh process and return the function's result with `peak_rss_mb`: that process's peak
    resident memory (VmHWM; ru_maxrss would count the parent's memory at fork)."""
    env = {**os.environ, "CRAWL2CHAT_NO_BAR": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.stress", "measure", target, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        # Whether the function had returned tells a crash in the work from one at interpreter exit.
        when = "after it returned" if '"peak_rss_mb"' in done.stdout else "before it returned"
        raise RuntimeError(f"{target} failed ({done.returncode}) {when}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a live process (Linux VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc: peak memory is measured on Linux only")


def abort_at_exit() -> dict[str, Any]:
    """A `peak_rss` target that returns, then would die of SIGABRT at interpreter exit, as a
    native library's teardown can (its test checks the measurement never reaches it)."""
    import atexit

    atexit.register(os.abort)
    return {}


def _measure(target: str, args: list[str]) -> None:
    import importlib

    module, _, name = target.partition(":")
    result = getattr(importlib.import_module(module), name)(*args)
    print(json.dumps({"result": result, "peak_rss_mb": vm_hwm_mb()}), flush=True)
    # The work is done and its result written: leave without the interpreter's teardown, where a
    # native library's threads can abort a finished process ("terminate called without an
    # active exception", seen in CI after the hostile corpus was curated), as torchrun workers do.
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str]) -> None:
    if argv[:1] == ["measure"]:
        _measure(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(
        description="Run the pipeline flow on WARC files (tests' and chaos benchmark's driver)."
    )
    parser.add_argument("--lake", required=True)
    parser.add_argument("--extractor", default="resiliparse")
    parser.add_argument("warcs", nargs="+")
    args = parser.parse_args(argv)
    result = run_pipeline(args.lake, args.warcs, args.extractor)
    print(json.dumps({"clean": result["curate"]["clean"], "tokens": result["tokenize"]["train"]["tokens"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
