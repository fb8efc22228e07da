"""Work pools, the `gpu` concurrency limit, and the deployments of deployments/prefect.yaml.

`crawl2chat deploy` does, against the server in PREFECT_API_URL, what these would:

    prefect work-pool create cpu --type process
    prefect work-pool create gpu --type process
    prefect gcl create gpu --limit 1
    prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

The pools and the limit go through the API client (a CLI call per step costs seconds of
imports each); the deployments through `prefect deploy` itself, which reads prefect.yaml.
Pools of other types (docker, kubernetes) take a base job template from deployments/templates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT / "deployments" / "prefect.yaml"
TEMPLATES = PROJECT / "deployments" / "templates"
POOLS = ("cpu", "gpu")


def prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the Prefect CLI of this environment against the server this process talks to."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, CRAWL2CHAT_HOME=str(PROJECT))
    # `crawl2chat deploy` reaches its server through a temporary setting (flows/server.py:
    # connected), which a child process does not inherit; without it the CLI would deploy to
    # a throw-away ephemeral server.
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.setdefault("CRAWL2CHAT_CRAWL_ROOT", str(PROJECT / "crawls"))  # where the watch deployment looks
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=PROJECT, env=env, text=True, capture_output=True, check=check
    )


def base_job_template(pool_type: str, template: Path | None) -> dict[str, Any]:
    if template is not None:
        return json.loads(template.read_text())
    from prefect.workers.base import BaseWorker

    worker = BaseWorker.get_worker_class_from_type(pool_type)
    if worker is None:
        raise ValueError(f"no worker type {pool_type!r} installed and no template for it")
    return worker.get_default_base_job_template()


def ensure_pool(client: Any, name: str, pool_type: str = "process", template: Path | None = None) -> None:
    """Create the work pool unless one of that name exists (an existing pool is left as it is)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(name=name, type=pool_type, base_job_template=base_job_template(pool_type, template))
        )


def deploy_all(pool_type: str = "process", gpu_limit: int = 1) -> str:
    """The pools, the `gpu` global concurrency limit (training flows take a slot while they run;
    with strict acquisition a missing limit is an error, never silently unlimited), then every
    deployment."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for pool in POOLS:
            template = TEMPLATES / f"{pool_type}-{pool}.json" if pool_type != "process" else None
            ensure_pool(client, pool, pool_type, template)
        client.upsert_global_concurrency_limit_by_name("gpu", gpu_limit)
    done = prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout
