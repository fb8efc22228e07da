"""Shared fixtures: a real Prefect test server, a real S3-protocol server, lakes on both."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CRAWL2CHAT_NO_BAR", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", SHARED / "data"))

# Fake credentials for the local S3 server. They double as a canary: tests assert that
# this secret never reaches logs, artifacts or manifests.
FAKE_KEY_ID = "AKIACRAWL2CHATTEST01"
FAKE_SECRET = "crawl2chat-canary-secret-do-not-log-9f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the Prefect test server, directly or through another
    fixture, so `make test-fast` can leave them out (-m "not server")."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (set CRAWL2CHAT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real Prefect server (subprocess, temporary SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback: the real S3 protocol, spoken through s3fs."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket; returns its s3:// root."""
    import s3fs

    name = f"lake-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(name)
    fs.invalidate_cache()
    return f"s3://{name}"


@pytest.fixture(params=["local", "s3"])
def lake_root(request, tmp_path):
    """The same test on local disk and on S3."""
    if request.param == "local":
        return str(tmp_path / "lake")
    return request.getfixturevalue("s3_bucket") + "/lake"


@pytest.fixture(scope="session")
def stress_crawl(tmp_path_factory) -> list[str]:
    """The sample crawl's WARC files, written once outside every lake (tests/support/stress.py)."""
    from tests.support import stress

    return stress.source_crawl(str(tmp_path_factory.mktemp("stress-crawl")))


@pytest.fixture(scope="session")
def stress_reference(prefect_server, stress_crawl, tmp_path_factory) -> dict:
    """An uninterrupted run of curate + tokenizer + tokenize on `stress_crawl`: its lake, the
    snapshot of every dataset it committed, and how long it took."""
    import time

    from tests.support import stress

    root = str(tmp_path_factory.mktemp("stress-reference") / "lake")
    started = time.monotonic()
    stress.run_pipeline(root, stress_crawl)
    return {"lake": root, "seconds": time.monotonic() - started, "snapshot": stress.snapshot(root)}
