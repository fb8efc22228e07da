"""Work pools, the `gpu` concurrency limit, and the deployments of deployments/prefect.yaml.

`crawl2chat deploy` does what a user would type, against the server in PREFECT_API_URL:

    prefect work-pool create cpu --type process
    prefect work-pool create gpu --type process
    prefect gcl create gpu --limit 1
    prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

Pools of other types (docker, kubernetes) take a base job template from deployments/templates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT / "deployments" / "prefect.yaml"
TEMPLATES = PROJECT / "deployments" / "templates"
POOLS = ("cpu", "gpu")


def prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the Prefect CLI of this environment (same server settings as this process)."""
    env = dict(os.environ, CRAWL2CHAT_HOME=str(PROJECT))
    env.setdefault("CRAWL2CHAT_CRAWL_ROOT", str(PROJECT / "crawls"))  # where the watch deployment looks
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=PROJECT, env=env, text=True, capture_output=True, check=check
    )


def ensure_pool(name: str, pool_type: str = "process", template: Path | None = None) -> None:
    if prefect("work-pool", "inspect", name, check=False).returncode == 0:
        return
    args = ["work-pool", "create", name, "--type", pool_type]
    if template is not None:
        args += ["--base-job-template", str(template)]
    prefect(*args)


def ensure_gpu_limit(limit: int = 1) -> None:
    """A global concurrency limit named `gpu`: training flows take a slot while they run.

    It must exist: with strict acquisition (see models' flows), a missing limit is an error,
    never silently unlimited.
    """
    if prefect("global-concurrency-limit", "inspect", "gpu", check=False).returncode == 0:
        prefect("global-concurrency-limit", "update", "gpu", "--limit", str(limit))
    else:
        prefect("global-concurrency-limit", "create", "gpu", "--limit", str(limit))


def deploy_all(pool_type: str = "process", gpu_limit: int = 1) -> str:
    for pool in POOLS:
        template = TEMPLATES / f"{pool_type}-{pool}.json" if pool_type != "process" else None
        ensure_pool(pool, pool_type, template)
    ensure_gpu_limit(gpu_limit)
    done = prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout
