"""The Prefect server `crawl2chat server start` runs (the e2e stack's) listens on loopback only."""

from __future__ import annotations

import pytest

from tests.test_reliability_security import LOOPBACK, listening, tree

pytestmark = pytest.mark.e2e


def test_the_local_prefect_server_listens_on_loopback(stack):
    port = int(stack.api_url.rsplit(":", 1)[1].split("/")[0])
    pid = int((stack.logs / "server.pid").read_text())
    sockets = listening(tree(pid))
    assert any(p == port for _, p, _ in sockets), sockets
    assert all(ip in LOOPBACK for ip, _, _ in sockets), sockets
    assert stack.api_url.startswith("http://127.0.0.1:")
