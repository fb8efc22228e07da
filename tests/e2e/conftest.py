"""A real Prefect stack for end-to-end tests: a server, deployments from deployments/prefect.yaml,
and process workers for the `cpu` and `gpu` pools, as a user would start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows import server
from tasks.config import load_config
from tests.conftest import free_port

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    api_url: str
    ui_url: str
    lake: Path
    env: dict[str, str]
    logs: Path


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Workers need SIGINT, sometimes twice, to exit promptly."""
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with_group = proc.pid
        try:
            os.killpg(with_group, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    home = tmp_path_factory.mktemp("e2e-prefect")
    lake = tmp_path_factory.mktemp("e2e-lake")
    port = free_port()
    api_url = server.start(home=home, port=port)
    env = dict(
        os.environ,
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(home),
        CRAWL2CHAT_LAKE=str(lake),
        CRAWL2CHAT_NO_BAR="1",
        OMP_NUM_THREADS="1",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="2",
    )
    deployed = subprocess.run([str(BIN / "crawl2chat"), "deploy"], env=env, text=True, capture_output=True)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    workers = []
    for pool in ("cpu", "gpu"):
        log = open(home / f"worker-{pool}.log", "wb")
        workers.append(
            subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        yield Stack(api_url, server.ui_url(api_url), lake, env, home)
    finally:
        for w in workers:
            _stop(w)
        server.stop(home)


# The tiny preset, made smaller where it only costs time: the e2e test proves the wiring.
E2E_OVERRIDES = {
    "sample_crawl.pages": 120,
    "sample_crawl.files": 2,
    "pretrain.train.steps": 40,
    "pretrain.train.warmup_steps": 10,
    "pretrain.train.eval_every": 20,
    "pretrain.train.checkpoint_every": 20,
    "sft.counts": {
        "facts_search": 1,
        "unknown": 150,
        "math": 150,
        "math_test": 10,
        "arithmetic": 20,
        "arithmetic_test": 5,
        "private": 20,
        "harmful": 20,
        "benign": 20,
        "refusal_test": 5,
        "identity": 20,
        "echo": 600,
        "doc_questions": 1,
        "doc_unknown": 20,
        "doc_unknown_test": 4,
    },
    "sft.train.steps": 10,
    "sft.train.eval_every": 5,
    "sft.train.checkpoint_every": 10,
    "evaluate.limits": {
        "math": 2,
        "fact": 2,
        "unknown": 2,
        "harmful": 1,
        "private": 1,
        "benign": 1,
        "doc": 2,
        "doc_unknown": 2,
    },
    "rl.iterations": 1,
    "rl.prompts": 2,
    "rl.samples": 2,
    "rl.chunk": 2,
    "rl.problems": {"train": 8, "eval": 4},
    "rl.eval_samples": 2,
    "rl.max_new_tokens": 32,
}


def e2e_config(lake_root: str, overrides: dict | None = None) -> dict:
    return load_config("tiny", {**E2E_OVERRIDES, "lake.root": lake_root, **(overrides or {})}).model_dump(mode="json")


@pytest.fixture(scope="session")
def pipeline_runs(stack):
    """The pipeline deployment run twice on the sample crawl through the API, as a user would
    from the UI: (first, second). Tests that need a finished pipeline ask for it."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = e2e_config(str(stack.lake))
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        first = run_deployment("pipeline/pipeline", parameters={"config": config}, timeout=1200, poll_interval=3)
        second = run_deployment("pipeline/pipeline", parameters={"config": config}, timeout=600, poll_interval=3)
    return first, second
