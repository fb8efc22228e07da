"""Run model-written Python in a sandbox: a separate process, isolated, bounded, warm.

    with Sandbox() as box:
        result = box.run("sum(range(10))")   # Result(output="", value="45", error=None, ...)
        box.layers                           # which isolation layers are on here

Everything the code tool receives was written by a model, so it is hostile input. Layers,
outermost first (`Sandbox.layers` says which are on; `detect` finds out once per process):

1. **Namespaces (bubblewrap).** The interpreter runs under `bwrap` with new user, PID,
   network, IPC, UTS and cgroup namespaces: its root is an empty tmpfs holding read-only
   /usr (the interpreter and its standard library) and nothing else: no /etc, /home, /root,
   /work, no project files, no venv; a private /proc that lists only its own processes; a
   loopback-only network (no route anywhere, not even to the host's loopback); a fresh
   size-capped tmpfs at /tmp, the only writable place; all capabilities dropped, no
   further user namespaces, a new session (no terminal injection), and it dies with us.
   Run as root, we start bwrap as `nobody` (65534), so even an escape lands unprivileged
   and RLIMIT_NPROC binds (the kernel exempts root from it).
2. **seccomp** (x86-64): a BPF filter bwrap installs before exec refuses, with EPERM, the
   system calls the code has no business making: ptrace, mount, namespaces, keyrings, bpf,
   perf, io_uring, kernel modules, reboot, clock changes, and sockets other than AF_UNIX.
3. **Resource limits**, set in each child before the code runs: CPU seconds, address
   space, file size, open files, processes/threads (RLIMIT_NPROC, per sandbox inside its
   user namespace), no core files; the tmpfs has its own size cap; output is read up to a
   cap and the child killed past it; wall time is enforced by the server inside the
   sandbox and again, with a margin, by this process (select on a pipe: no signals, so it
   works in Prefect's worker threads).
4. **A clean start per call.** The warm interpreter (models/sandbox_server.py) forks one
   child per call into an emptied work folder, with an empty environment, and afterwards
   kills every process the call left behind and deletes what it wrote.

Where bubblewrap cannot start (no user namespaces: some containers and CI services, or
Ubuntu's AppArmor restriction), `Sandbox` refuses to run code, with the reason, unless it
is built with `isolation="limits"` (or CRAWL2CHAT_SANDBOX=limits): then layers 3 and 4 only,
in a fresh temporary folder, as `nobody` when we are root. That mode assumes the code is not
malicious, only wrong: it can read what the user it runs as can read and reach the network.

Warm pool: `size` interpreters wait, started in the background. A call takes one, and it
serves the next call too: each call runs in a child the interpreter forked ahead of time, so
a call costs a pipe write plus the code (1.5-2.6 ms in a loop on a loaded 2-core machine),
not a Python start-up (benchmarks/tools.py). A worker that dies, or whose call had to be
killed, is discarded and replaced.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

SERVER = Path(__file__).with_name("sandbox_server.py")
NOBODY = 65534
MAX_CODE_CHARS = 16_000  # a program longer than this is refused before anything runs
STARTUP_S = 15.0  # a worker that is not ready in this long is reported as failed
MARGIN_S = 2.0  # our own deadline beyond the server's wall-time limit


class SandboxUnavailable(RuntimeError):
    """No sandbox can run here (with the reason); code is not run at all."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 5.0
    cpu_s: int = 5
    memory_bytes: int = 512 << 20  # address space: Python itself takes ~30 MB
    file_bytes: int = 8 << 20  # largest single file the code may write
    tmp_bytes: int = 32 << 20  # the whole writable tmpfs
    open_files: int = 64
    processes: int = 16  # processes and threads (Linux counts both)
    output_bytes: int = 64 << 10  # stdout + stderr read back; past it the child is killed
    value_chars: int = 4096  # repr of the last expression, and the error line


@dataclass
class Result:
    output: str  # what the code printed (stdout and stderr), up to the cap
    value: str | None  # repr of the last expression's value, when it was an expression and not None
    error: str | None  # the exception's last line ("ZeroDivisionError: division by zero"), or why it was stopped
    status: str  # ok, error (the code raised), killed (a limit stopped it, or the sandbox failed)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self, max_chars: int = 1000) -> str:
        """What the model reads: printed output, then the value or the error line; the end is
        kept when it is cut (an error's last line matters most)."""
        parts = [p for p in (self.output.rstrip("\n"), self.value, self.error) if p]
        text = "\n".join(parts)
        return text if len(text) <= max_chars else "..." + text[-(max_chars - 3) :]


# -- what this machine allows -----------------------------------------------------------------

# x86-64 system call numbers the filter refuses (EPERM); socket(2) is refused unless AF_UNIX.
DENIED_SYSCALLS = {
    "ptrace": 101,
    "syslog": 103,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "pivot_root": 155,
    "chroot": 161,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
}
SOCKET = 41
AF_UNIX = 1
AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
EPERM = 1


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter (struct sock_filter[]) for bwrap's --seccomp, or None
    where we have no table of system call numbers (only x86-64 here)."""
    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, deny, kill = 0x7FFF0000, 0x00050000 | EPERM, 0x80000000  # SECCOMP_RET_*

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    numbers = sorted(DENIED_SYSCALLS.values())
    prog = [
        op(ld, 4),
        op(jeq, AUDIT_ARCH_X86_64, 1, 0),
        op(ret, kill),  # another ABI: kill
        op(ld, 0),
        op(jge, X32_BIT, 0, 1),
        op(ret, deny),  # the x32 ABI: refuse
    ]
    # A denied number jumps over the rest of the list and the 5 socket instructions to `deny`.
    prog += [op(jeq, n, len(numbers) - 1 - i + 5, 0) for i, n in enumerate(numbers)]
    # socket(): allowed for AF_UNIX only (args[0]: its low 32 bits at offset 16).
    prog += [op(jeq, SOCKET, 1, 0), op(ret, allow), op(ld, 16), op(jeq, AF_UNIX, 0, 1), op(ret, allow), op(ret, deny)]
    return b"".join(prog)


def interpreter() -> str:
    """The Python the sandbox runs: Debian's /usr/bin/python3 where it exists (under the /usr
    we bind, readable by `nobody`), else the interpreter we run on (its prefix is bound)."""
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@dataclass(frozen=True)
class Layers:
    namespaces: bool
    seccomp: bool
    limits: bool
    unprivileged: bool  # outside any namespace, the sandbox runs as a user that is not root
    reason: str  # why namespaces are off ("" when on)

    def describe(self) -> str:
        on = [name for name in ("namespaces", "seccomp", "limits") if getattr(self, name)]
        text = " + ".join(on) + (", as an unprivileged user" if self.unprivileged else ", as root")
        return text + (f" (no namespaces: {self.reason})" if self.reason else "")


_DETECTED: dict[str, Layers] = {}
_DETECT_LOCK = threading.Lock()


def detect() -> Layers:
    """Which layers this machine allows, found once per process by starting bwrap for real."""
    with _DETECT_LOCK:
        if "layers" not in _DETECTED:
            _DETECTED["layers"] = _probe()
        return _DETECTED["layers"]


def _probe() -> Layers:
    unprivileged = os.geteuid() != 0 or _readable_by_nobody(interpreter())
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Layers(False, False, True, unprivileged, "bubblewrap (bwrap) is not installed")
    program = seccomp_program()
    try:
        proc = _start(
            [*_bwrap_args(bwrap, interpreter(), 16 << 20), "-I", "-S", "-c", "import os; print(os.getuid())"],
            program,
            unprivileged,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=STARTUP_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Layers(False, False, True, unprivileged, f"bwrap failed to start: {exc}")
    if proc.returncode != 0 or out.strip() != str(NOBODY).encode():
        why = err.decode(errors="replace").strip().splitlines()
        return Layers(False, False, True, unprivileged, f"bwrap failed: {why[-1] if why else proc.returncode}")
    return Layers(True, program is not None, True, unprivileged, "")


def _readable_by_nobody(python: str) -> bool:
    """Whether `nobody` can run `python` (pyenv under /root, for one, it cannot)."""
    path = Path(python)
    return all(
        os.stat(p).st_mode & 0o005 == 0o005 for p in [*path.parents, path] if str(p) != "/"
    ) and python.startswith("/usr/")


def _bwrap_args(bwrap: str, python: str, tmp_bytes: int) -> list[str]:
    """bwrap's command line up to the interpreter (its arguments follow); the seccomp
    program's fd is added by `_start`."""
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "HOME",
        "/tmp",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
        "--chdir",
        "/tmp",
    ]
    if not python.startswith("/usr/"):  # an interpreter elsewhere (a CI toolcache): bind its prefix
        prefix = os.path.dirname(os.path.dirname(python))
        args += ["--ro-bind", prefix, prefix]
    return [*args, "--", python]


def _start(args: list[str], seccomp: bytes | None, unprivileged: bool, **kwargs) -> subprocess.Popen:
    """Start `args` with an empty environment, as nobody when we are root and `unprivileged`,
    and, for bwrap given a `seccomp` program, that program on an inherited memfd."""
    fds: tuple[int, ...] = ()
    if seccomp is not None and args and os.path.basename(args[0]) == "bwrap":
        fd = os.memfd_create("seccomp", 0)
        os.write(fd, seccomp)
        os.lseek(fd, 0, os.SEEK_SET)
        fds = (fd,)
        args = [args[0], "--seccomp", str(fd), *args[1:]]
    drop = os.geteuid() == 0 and unprivileged
    try:
        return subprocess.Popen(
            args,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            pass_fds=fds,
            close_fds=True,
            cwd="/",
            user=NOBODY if drop else None,
            group=NOBODY if drop else None,
            extra_groups=[] if drop else None,
            **kwargs,
        )
    finally:
        for fd in fds:
            os.close(fd)


# -- one warm interpreter ---------------------------------------------------------------------


class WorkerDied(RuntimeError):
    """The sandboxed interpreter stopped answering (killed by the code, or a failure)."""


class NotDelivered(WorkerDied):
    """The interpreter was gone before it took the code: the code never ran, so another
    interpreter may run it."""


class Worker:
    """One sandboxed interpreter (models/sandbox_server.py) and the pipes to it."""

    def __init__(self, layers: Layers, limits: Limits):
        self.limits = limits
        self.folder: str | None = None
        server = SERVER.read_text()
        if layers.namespaces:
            workdir, pid_namespace = "/tmp/work", True
            args = _bwrap_args(shutil.which("bwrap") or "bwrap", interpreter(), limits.tmp_bytes)
        else:  # resource limits only, in a fresh folder of ours
            self.folder = tempfile.mkdtemp(prefix="crawl2chat-sandbox-")
            if os.geteuid() == 0 and layers.unprivileged:
                os.chown(self.folder, NOBODY, NOBODY)
            workdir, pid_namespace = os.path.join(self.folder, "work"), False
            args = [interpreter()]
        settings = {"workdir": workdir, "pid_namespace": pid_namespace, "limits": asdict(limits)}
        args += ["-I", "-S", "-c", server, json.dumps(settings)]
        self.proc = _start(
            args,
            seccomp_program() if layers.seccomp else None,
            layers.unprivileged,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.calls = 0
        try:
            hello = self._receive(time.monotonic() + STARTUP_S)
        except WorkerDied as exc:
            err = self._stderr()
            self.close()
            raise SandboxUnavailable(f"the sandbox did not start: {exc}{': ' + err if err else ''}") from None
        if not hello.get("ready"):
            self.close()
            raise SandboxUnavailable(f"the sandbox did not start: {hello}")

    def run(self, code: str) -> Result:
        """Run `code` in a fresh child; WorkerDied if the interpreter stops answering."""
        self.calls += 1
        deadline = time.monotonic() + self.limits.wall_s + MARGIN_S
        self._send({"code": code}, deadline)
        try:
            taken = self._receive(deadline)
        except WorkerDied as exc:  # gone before it read the code: it never ran
            raise NotDelivered(f"{exc}{self._why()}") from None
        if not taken.get("taken"):
            raise WorkerDied(f"the sandbox sent {taken!r} instead of taking the code")
        try:
            reply = self._receive(deadline)
        except WorkerDied as exc:
            raise WorkerDied(f"{exc}{self._why()}") from None
        return Result(reply["output"], reply["value"], reply["error"], reply["status"], reply.get("seconds", 0.0))

    def _send(self, message: dict, deadline: float) -> None:
        body = json.dumps(message).encode()
        data = memoryview(struct.pack(">I", len(body)) + body)
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        while data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise WorkerDied("the sandbox stopped reading")
            try:
                data = data[os.write(fd, data) :]
            except (BrokenPipeError, BlockingIOError) as exc:
                if isinstance(exc, BrokenPipeError):
                    raise NotDelivered(f"the sandbox exited{self._why()}") from None

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WorkerDied("the sandbox did not answer in time")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise WorkerDied("the sandbox exited")
            data += chunk
        return data

    def _receive(self, deadline: float) -> dict:
        size = struct.unpack(">I", self._read(4, deadline))[0]
        if size > 4 * (self.limits.output_bytes + self.limits.value_chars * 2) + 4096:
            raise WorkerDied("the sandbox sent an oversized reply")
        return json.loads(self._read(size, deadline))

    def _why(self) -> str:
        """What a dead interpreter wrote to stderr, for the error message ("" while it runs)."""
        if self.proc.poll() is None:
            return ""
        err = self._stderr()
        return f" ({err})" if err else f" (exit status {self.proc.returncode})"

    def _stderr(self) -> str:
        try:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=2)
            return err.decode(errors="replace").strip()[-500:]
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill the interpreter (bwrap's --die-with-parent takes its namespace with it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# -- the pool ---------------------------------------------------------------------------------


class Sandbox:
    """A pool of warm sandboxed interpreters; `run` is safe to call from many threads.

    `isolation`: "auto" (namespaces where bwrap works, else refuse; CRAWL2CHAT_SANDBOX=limits
    opts into the weaker mode), "namespaces" (the same, spelled out) or "limits" (resource
    limits only: see the module docstring)."""

    def __init__(self, size: int = 2, limits: Limits | None = None, isolation: str | None = None, max_calls: int = 500):
        isolation = isolation or os.environ.get("CRAWL2CHAT_SANDBOX", "auto")
        if isolation not in ("auto", "namespaces", "limits"):
            raise ValueError(f"isolation must be auto, namespaces or limits, got {isolation!r}")
        found = detect()
        if isolation == "limits":
            found = Layers(False, False, True, found.unprivileged, found.reason or "resource limits only, as asked")
        elif not found.namespaces:
            raise SandboxUnavailable(
                f"no isolated sandbox here ({found.reason}); set CRAWL2CHAT_SANDBOX=limits to run code with resource limits only"
            )
        self.layers = found
        self.limits = limits or Limits()
        self.size = max(1, size)
        self.max_calls = max_calls
        self._idle: deque[Worker] = deque()
        self._starting = 0
        self._lock = threading.Lock()
        self._closed = False
        # Every interpreter is started by these long-lived threads. bwrap's --die-with-parent
        # is PR_SET_PDEATHSIG, which fires when the *thread* that started the process exits:
        # a worker started by a short-lived thread (a refill thread, a Prefect task's thread)
        # was killed moments later, sometimes after it had taken the code.
        self._starter = concurrent.futures.ThreadPoolExecutor(self.size, thread_name_prefix="sandbox-start")
        self._idle.append(self._new_worker())  # fails here, clearly, if it cannot start
        self._refill()

    def _new_worker(self) -> Worker:
        """A fresh interpreter, started by the pool's own threads (see __init__)."""
        try:
            started = self._starter.submit(Worker, self.layers, self.limits)
        except RuntimeError:  # shut down by close() in the meantime
            raise SandboxUnavailable("the sandbox is closed") from None
        return started.result()

    def _refill(self) -> None:
        """Start workers in the background until `size` are idle or starting."""
        with self._lock:
            missing = 0 if self._closed else self.size - len(self._idle) - self._starting
            self._starting += max(0, missing)
        for _ in range(max(0, missing)):
            self._starter.submit(self._start_one)

    def _start_one(self) -> None:
        try:
            worker = Worker(self.layers, self.limits)
        except SandboxUnavailable:
            worker = None
        with self._lock:
            self._starting -= 1
            if worker is not None and not self._closed and len(self._idle) < self.size:
                self._idle.append(worker)
                worker = None
        if worker is not None:
            worker.close()

    def _take(self) -> Worker:
        with self._lock:
            if self._closed:
                raise SandboxUnavailable("the sandbox is closed")
            while self._idle:
                worker = self._idle.popleft()
                if worker.alive():
                    return worker
                worker.close()
        return self._new_worker()  # none warm (all busy or starting): a cold one

    def run(self, code: str) -> Result:
        """Run `code` in a fresh child of a warm interpreter; never raises for what the code
        does (a crash, a limit, a dead interpreter are all an error Result)."""
        if not isinstance(code, str):
            return Result("", None, "error: code must be text", "killed")
        if len(code) > MAX_CODE_CHARS:
            return Result("", None, f"error: code longer than {MAX_CODE_CHARS} characters", "killed")
        started = time.monotonic()
        try:
            worker = self._take()
        except SandboxUnavailable as exc:
            return Result("", None, f"error: {exc}", "killed")
        try:
            try:
                result = worker.run(code)
            except NotDelivered:  # a warm interpreter that died idle: the code goes to a new one, once
                worker.close()
                worker = self._new_worker()
                result = worker.run(code)
        except SandboxUnavailable as exc:
            return Result("", None, f"error: {exc}", "killed")
        except WorkerDied as exc:
            worker.close()
            self._refill()
            return Result("", None, f"error: {exc}", "killed", time.monotonic() - started)
        keep = result.status != "killed" and worker.calls < self.max_calls and worker.alive()
        with self._lock:
            if keep and not self._closed and len(self._idle) < self.size:
                self._idle.append(
                    worker
                )  # to the back: the next call takes the one idle longest (cleaned up, re-forked)
                worker = None
        if worker is not None:
            worker.close()
            self._refill()
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._idle), deque()
        self._starter.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: dict[str, Sandbox | SandboxUnavailable] = {}
_SHARED_LOCK = threading.Lock()


def shared() -> Sandbox:
    """The process's sandbox, started on first use and closed at exit (the engine's default:
    one pool for every engine and thread). Raises SandboxUnavailable, every time, where
    none can run."""
    with _SHARED_LOCK:
        if "box" not in _SHARED:
            try:
                _SHARED["box"] = Sandbox()
                atexit.register(_SHARED["box"].close)
            except SandboxUnavailable as exc:
                _SHARED["box"] = exc
        box = _SHARED["box"]
    if isinstance(box, SandboxUnavailable):
        raise box
    return box
