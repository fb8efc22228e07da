"""Storage faults on demand: an S3 endpoint on loopback that fails a share of requests the way S3 does.

    with FaultProxy(upstream="http://127.0.0.1:5000", rate=0.1, seed=1) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint       # s3fs -> proxy -> the real store
        ...                                                    # proxy.injected counts what it did

The proxy forwards every request to the upstream S3 server (moto in tests) unchanged, Host and
signature included, and for a seeded share `rate` of them does one of the things a real S3
front end does under load or when a connection drops:

- `500`: answers 500 InternalError ("We encountered an internal error. Please try again.")
  without passing the request on;
- `503`: answers 503 SlowDown ("Please reduce your request rate.") without passing it on;
- `reset`: passes the request on (the store applies it) and then resets the connection
  instead of answering: the client cannot tell whether a write happened, so retrying it
  must be harmless;
- `truncate` (GET with a body only): passes it on, sends the real status and headers
  (Content-Length included) and half of the body, then resets the connection: a read cut
  short, which a client must notice rather than hand on as short data.

Threads, sockets and the standard library only; nothing is mocked on the client side.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("500", "503", "reset", "truncate")
ERRORS = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
    "403": ("AccessDenied", "Access Denied"),  # only on demand (`fail_next`): a retry cannot fix it
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    """A fault-injecting HTTP proxy for one S3 endpoint, listening on 127.0.0.1."""

    def __init__(self, upstream: str, rate: float = 0.0, seed: int = 0, kinds: Sequence[str] = KINDS):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate, self.kinds = rate, tuple(kinds)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # by method
        self.injected: Counter = Counter()  # by fault kind
        self._sticky: list[list] = []  # [kind, method, path substring, times left]
        self._server: ThreadingHTTPServer | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def faulty(self, rate: float, kinds: Sequence[str] | None = None) -> Iterator[FaultProxy]:
        """Inject faults at `rate` (of `kinds`) inside the block only."""
        saved = self.rate, self.kinds
        self.rate, self.kinds = rate, tuple(kinds or self.kinds)
        try:
            yield self
        finally:
            self.rate, self.kinds = saved

    def fail_next(self, times: int, kind: str = "500", method: str = "GET", path: str = "") -> None:
        """Fail the next `times` `method` requests whose path contains `path` with `kind`,
        whatever the rate: an outage of one object longer than the client's own retries."""
        if kind not in ERRORS and kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._sticky.append([kind, method, path, times])

    def pending(self) -> list[tuple[str, str, str, int]]:
        """The `fail_next` faults not yet used up: (kind, method, path, times left)."""
        with self._lock:
            return [tuple(sticky) for sticky in self._sticky if sticky[3] > 0]

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    # -- the decision --------------------------------------------------------------------

    def choose(self, method: str, path: str) -> str | None:
        """The fault for this request, or None to pass it through (seeded, thread-safe)."""
        with self._lock:
            self.requests[method] += 1
            for sticky in self._sticky:
                kind, wanted, part, left = sticky
                if left > 0 and method == wanted and part in path:
                    sticky[3] -= 1
                    return kind
            if self._rng.random() >= self.rate:
                return None
            kinds = [k for k in self.kinds if k != "truncate" or method == "GET"]
            if not kinds:
                return None
            return self._rng.choice(kinds)

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dropped connection looks to the client (not a clean FIN)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP], data
            finally:
                conn.close()

        def _error(self, kind: str) -> None:
            code, message = ERRORS[kind]
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()
            self.send_response(int(kind))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            body = self._body()
            kind = proxy.choose(self.command, self.path)
            if kind in ERRORS:
                proxy.count(kind)
                self._error(kind)
                return
            status, headers, data = self._forward(body)
            if kind == "truncate" and len(data) < 2:
                kind = None  # nothing to cut short
            if kind == "reset":
                proxy.count(kind)
                self.close_connection = True
                _reset(self.connection)
                return
            self.send_response(status)
            for name, value in headers:
                if name.lower() != "content-length" or self.command == "HEAD":  # HEAD: the object's length
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if kind == "truncate":
                proxy.count(kind)
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                _reset(self.connection)
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
