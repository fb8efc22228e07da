"""Text extraction in a worker process, with a per-document time limit and no signals.

Prefect runs tasks in worker threads, where signal-based timeouts cannot work, and a thread
that overruns cannot be stopped. So the extractor (trafilatura with FineWeb's settings, or
resiliparse) runs in a child process (`python -m tasks.curate.extract`) that the calling thread
talks to over pipes, waiting with select(): a document
that takes longer than `timeout_s` gets its worker killed and counted as `timeout`; the next
document starts a fresh worker. Each thread keeps its worker between tasks, so the import cost
(about a second for trafilatura) is paid once per thread, not once per WARC file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.curate import fineweb_extractor

if TYPE_CHECKING:  # the worker imports this module: nothing but the standard library and the
    # extractor, so FineWeb's folder, first on its path, meets no other library of the project's
    from tasks.curate.config import ExtractConfig

REPO = Path(__file__).resolve().parents[2]
CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
STARTUP_TIMEOUT_S = 120.0
F_SETPIPE_SZ = 1031  # Linux: grow a pipe's buffer (the default 64 KiB makes a 150 KB page 3 round trips)
PIPE_BYTES = 1 << 20  # importing trafilatura on a loaded machine; not a per-document limit


def extract_function(config: dict[str, Any]):
    """The plain extraction function for a config (also used in-process by benchmarks)."""
    if config["extractor"] == "trafilatura":
        import trafilatura

        wanted = config.get("require_version")
        if wanted and trafilatura.__version__ != wanted:  # the folder did not shadow the project's
            raise RuntimeError(
                f"expected trafilatura {wanted}, imported {trafilatura.__version__} from {trafilatura.__file__}"
            )
        # trafilatura 1.x's parser returns nothing for a page with a NUL or another C0 control
        # character (datatrove then loses a readable page); they carry no text, so 1.x reads the
        # page without them. 2.x copes with them itself.
        controls = CONTROL_CHARS if wanted else None

        def run(html: str) -> str | None:
            return trafilatura.extract(
                controls.sub("", html) if controls else html,
                favor_precision=config["favor_precision"],
                include_comments=config["include_comments"],
                deduplicate=config["deduplicate"],
            )

        return run
    if config["extractor"] == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text

        def run(html: str) -> str | None:
            return extract_plain_text(html, main_content=True, alt_texts=False)

        return run
    raise ValueError(f"unknown extractor {config['extractor']!r}")


def reset(config: dict[str, Any]) -> None:
    """Forget what earlier documents left behind. trafilatura's `deduplicate` keeps a
    process-wide LRU cache of text segments, so a segment seen on an earlier page is dropped
    from a later one: across pages, not only within one. Cleared at the start of every WARC
    file, a file's output depends on that file alone (a cached task result stays true)."""
    if config["extractor"] == "trafilatura":
        from trafilatura.meta import reset_caches

        reset_caches()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from `fd`, or None at end of file or past the deadline (select, not signals)."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, tag: bytes, payload: bytes) -> None:
    data = tag + struct.pack("<Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(fd: int, deadline: float | None = None) -> tuple[bytes, bytes] | None:
    head = _read_exact(fd, 9, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<Q", head[1:])[0], deadline)
    return None if body is None else (head[:1], body)


def serve(config: dict[str, Any]) -> None:
    """The worker's loop (child process): HTML frames in, text frames out."""
    run = extract_function(config)  # imports the extractor: what fails on a broken install
    # Up to here stderr goes to the parent, which quotes it if the worker does not start;
    # from now on warnings the extractor logs per page go nowhere (nobody reads that pipe).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.close(devnull)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    _write_frame(stdout, b"R", b"")
    while (frame := _read_frame(stdin)) is not None:
        if frame[0] == b"C":
            reset(config)
            _write_frame(stdout, b"R", b"")
            continue
        try:
            text = run(frame[1].decode("utf-8", "surrogatepass"))
            _write_frame(stdout, b"T" if text is not None else b"N", (text or "").encode("utf-8", "surrogatepass"))
        except Exception as exc:  # a page that breaks the extractor is that page's problem
            _write_frame(stdout, b"E", f"{type(exc).__name__}: {exc}"[:200].encode())


def _last_lines(stderr: bytes, returncode: int | None, lines: int = 12) -> str:
    """The end of a dead worker's stderr (a traceback ends with its cause), or why there is none."""
    text = stderr.decode("utf-8", "replace").strip()
    if not text:
        return f"it exited with code {returncode} and wrote nothing to stderr"
    return "\n".join(text.splitlines()[-lines:])


class Extractor:
    """One worker process; `extract(html)` returns (text, None) or (None, reason).

    `fineweb=True`: the worker runs FineWeb's trafilatura 1.11 from its own folder (put first on
    the worker's path) with the config's settings, whatever the config's extractor."""

    def __init__(self, config: ExtractConfig, fineweb: bool = False):
        self._proc: subprocess.Popen | None = None
        self.config = config.model_dump()
        self.timeout = config.timeout_s
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if fineweb:
            site = fineweb_extractor.folder(config.fineweb_extractor_dir)
            if reason := fineweb_extractor.missing(site):
                raise RuntimeError(reason)
            self.config.update(extractor="trafilatura", require_version=fineweb_extractor.VERSION)
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))
        self.restarts = 0

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.curate.extract", json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # read only if the worker does not start (see `serve`)
            cwd=str(REPO),
            env=self.env,
        )
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):  # a page fits the pipe: one write, no ping-pong
                fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        if _read_frame(proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S) is None:
            proc.kill()
            _, stderr = proc.communicate()
            raise RuntimeError(
                f"the {self.config['extractor']} worker did not start: {_last_lines(stderr, proc.returncode)}"
            )
        proc.stderr.close()
        self._proc = proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                pipe.close()

    def extract(self, html: str | bytes) -> tuple[str | None, str | None]:
        """The text of one page, given as a str or as UTF-8 bytes (sent as they are)."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self.restarts += 1
            self._kill()
            self._start()
        proc = self._proc
        deadline = time.monotonic() + self.timeout
        try:
            payload = html if isinstance(html, bytes) else html.encode("utf-8", "surrogatepass")
            _write_frame(proc.stdin.fileno(), b"H", payload)
            frame = _read_frame(proc.stdout.fileno(), deadline)
        except (BrokenPipeError, ConnectionResetError, OSError):
            frame = None
        if frame is None:
            crashed = proc.poll() is not None
            self._kill()
            return None, "worker_crashed" if crashed else "timeout"
        tag, payload = frame
        if tag == b"E":
            return None, "error"
        return (payload.decode("utf-8", "surrogatepass") if tag == b"T" else None), None

    def reset(self) -> None:
        """Clear the worker's caches (see `reset`); a worker not started yet has none."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            _write_frame(self._proc.stdin.fileno(), b"C", b"")
            if _read_frame(self._proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S) is not None:
                return
        except OSError:
            pass
        self._kill()  # a worker that cannot reset is replaced by a fresh one

    def close(self) -> None:
        self._kill()

    def __del__(self) -> None:
        self._kill()


_local = threading.local()


def extractor_for(config: ExtractConfig, fineweb: bool = False) -> Extractor:
    """This thread's worker for `config` (FineWeb's 1.11 if `fineweb`), started on first use and
    kept for later tasks."""
    workers: dict[str, Extractor] = getattr(_local, "workers", None) or {}
    _local.workers = workers
    key = f"{fineweb}:{config.model_dump_json()}"
    if key not in workers:
        workers[key] = Extractor(config, fineweb)
    return workers[key]


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
