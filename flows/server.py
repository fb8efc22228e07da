"""A local Prefect server for real runs: SQLite under `.prefect/` in the project, started in
the background once and reused.

Prefect's ephemeral mode (no PREFECT_API_URL) starts a throw-away server inside every
process, costs ~12 s and loses task-run records at exit, so runs from the terminal always
talk to a real server: the one named by PREFECT_API_URL, or this local one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = PROJECT / ".prefect"
DEFAULT_PORT = int(os.environ.get("CRAWL2CHAT_PREFECT_PORT", "4200"))


def api_url(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/api"


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def start(home: Path = DEFAULT_HOME, port: int = DEFAULT_PORT, host: str = "127.0.0.1", wait_s: float = 120) -> str:
    """Start the server in the background unless one already answers; return its API URL.

    It listens on loopback unless `host` says otherwise.
    """
    url = api_url(port, host)
    if healthy(url):
        return url
    home.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # The UI calls the API at this URL; it must be this server, not the default port.
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=url,
    )
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives the command that started it; `stop` ends it
    )
    (home / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if healthy(url):
            return url
        if proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited ({proc.returncode}); see {home / 'server.log'}")
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect server did not answer at {url} in {wait_s:.0f}s")


def stop(home: Path = DEFAULT_HOME) -> bool:
    pid_file = home / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 15)
    pid_file.unlink()
    return True


@contextlib.contextmanager
def connected(url: str | None = None) -> Iterator[str]:
    """Run the body against a real server: `url`, PREFECT_API_URL, or the local one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = url or os.environ.get("PREFECT_API_URL") or start()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


def ui_url(url: str) -> str:
    return url.removesuffix("/api")
