"""A real Prefect stack for end-to-end tests: a server, deployments from deployments/prefect.yaml,
and process workers for the `cpu` and `gpu` pools, as a user would start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows import server
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
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
    try:
        yield Stack(api_url, server.ui_url(api_url), lake, env, home)
    finally:
        for w in workers:
            _stop(w)
        server.stop(home)
