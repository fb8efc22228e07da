"""The program that runs inside the sandbox (models/sandbox.py): a warm interpreter that forks
one child per piece of code, so a call costs a fork, not a Python start-up.

It is started as `python -I -S -c <this file's text> <settings as JSON>`, inside bubblewrap's
namespaces where they are available; it imports nothing but the standard library and nothing
of the project (the sandbox has no view of the project's files). Protocol on stdin/stdout:
messages of a 4-byte big-endian length and UTF-8 JSON. It first writes {"ready": true}; then
for each request {"code": str} it writes {"taken": true} as soon as it has read the code (so
the caller knows whether a server that dies had the code: one that had not can be replaced
and the code sent again) and then the reply {"output", "value", "error", "status", ...}.

Per request: a fresh, empty work folder; a child forked with the resource limits set and fd
0 on /dev/null, fds 1 and 2 on one output pipe and fd 3 on a result pipe (nothing else open:
the child never sees the protocol pipes); the server reads the output up to its cap, kills
the child at the wall-time deadline or when the output passes the cap, then kills every
other process the code left behind (inside a PID namespace: every process but itself and
the namespace's init; outside one: the child's process group) and deletes what it wrote.
"""

import ast
import builtins
import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time
import traceback

SETTINGS = json.loads(sys.argv[1])
WORK = SETTINGS["workdir"]
CHUNK = 65536
SIGNAL_NAMES = {getattr(signal, n): n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")}
WHY = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGSEGV": "segmentation fault", "SIGKILL": "killed"}


def read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_all(fd):
    data = bytearray()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk


def receive():
    head = read_exact(0, 4)
    if head is None:
        return None
    body = read_exact(0, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def send(message):
    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(1, data) :]


def limit(name, value):
    resource.setrlimit(getattr(resource, name), (value, value))


def child(code_r, out_w, res_w):
    """In the forked child: limits and fds, then wait for the code and run it. Never returns."""
    try:
        os.setpgid(0, 0)
        os.chdir(WORK)
        # fds 0-4: /dev/null, output, output, result, code. Each source is first copied
        # above 100, so no dup2 overwrites a source that a later one still needs.
        sources = [os.open("/dev/null", os.O_RDONLY), out_w, out_w, res_w, code_r]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(5, 1 << 16)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        limits = SETTINGS["limits"]
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))  # SIGXCPU, then SIGKILL
        limit("RLIMIT_AS", limits["memory_bytes"])
        limit("RLIMIT_FSIZE", limits["file_bytes"])
        limit("RLIMIT_NOFILE", limits["open_files"])
        limit("RLIMIT_NPROC", limits["processes"])
        limit("RLIMIT_CORE", 0)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stdin = open(0, closefd=False)
    except BaseException as exc:  # a limit the kernel refuses: report it, run nothing
        os.write(3, json.dumps({"error": f"sandbox setup failed: {exc!r}"}).encode())
        os._exit(70)
    code = read_all(4)
    os.close(4)
    me = os.getpid()
    result = {"value": None, "error": None}
    try:
        code = code.decode("utf-8", "surrogatepass")
        tree = ast.parse(code, "<code>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        scope = {"__name__": "__main__", "__builtins__": builtins}
        exec(compile(tree, "<code>", "exec"), scope)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<code>", "eval"), scope)
            if value is not None:
                result["value"] = repr(value)[: limits["value_chars"]]
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the code's outcome
        lines = traceback.format_exception_only(type(exc), exc)
        result["error"] = (lines[-1].strip() if lines else type(exc).__name__)[: limits["value_chars"]]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    if os.getpid() != me:  # a process the code forked got here: only the child itself reports
        os._exit(0)
    payload = json.dumps(result).encode()
    try:
        while payload:
            payload = payload[os.write(3, payload) :]
        for fd in (1, 2, 3):  # the server sees the end now, not after the exit's teardown
            os.close(fd)
    except OSError:
        pass
    os._exit(0)


def finish(pid):
    """Kill the child (if it still runs) and reap it; its wait status."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def sweep(pid):
    """Kill what the code left running: every process of the namespace but init and us, or
    outside a PID namespace the child's process group. Repeated until none is left (a fork
    bomb forks while it is being killed; RLIMIT_NPROC bounds it)."""
    me = os.getpid()
    for _ in range(100):
        if SETTINGS["pid_namespace"]:
            others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
            for p in others:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            while True:  # reap our own children; init reaps the orphans
                try:
                    if os.waitpid(-1, os.WNOHANG) == (0, 0):
                        break
                except ChildProcessError:
                    break
            if not others:
                return
            time.sleep(0.001)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                return
            time.sleep(0.001)


def clean(folder):
    """Delete everything in `folder` (what the code wrote), whatever its permissions."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                for root, dirs, _ in os.walk(path):
                    for d in dirs:
                        os.chmod(os.path.join(root, d), 0o700)
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def spawn():
    """Fork the next child ahead of its call: by the time code arrives, the fork, the limits
    and the fds are done, and running it costs a pipe write. Returns (pid, fds)."""
    clean(WORK)
    code_r, code_w = os.pipe()
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (code_w, out_r, res_r):
            os.close(fd)
        child(code_r, out_w, res_w)
    for fd in (code_r, out_w, res_w):
        os.close(fd)
    return pid, code_w, out_r, res_r


def run(spawned, code):
    """Hand `code` to the waiting child and collect what it prints and returns, within the
    wall time and the output cap; then kill it and whatever it started."""
    pid, code_w, out_r, res_r = spawned
    limits = SETTINGS["limits"]
    started = time.monotonic()
    deadline = started + limits["wall_s"]
    output, result, failure = bytearray(), bytearray(), None
    try:
        data = code.encode("utf-8", "surrogatepass")
        while data:  # the child reads as we write; a child that died reads nothing
            if not select.select([], [code_w], [], max(0.0, deadline - time.monotonic()))[1]:
                break
            data = data[os.write(code_w, data[:CHUNK]) :]
    except OSError:
        pass
    os.close(code_w)
    open_fds = {out_r, res_r}
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            failure = f"timed out after {limits['wall_s']:g} s"
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                open_fds.discard(fd)
            elif fd == out_r:
                output += chunk
                if len(output) > limits["output_bytes"]:
                    failure = f"output over {limits['output_bytes']} bytes"
                    open_fds.clear()
            else:
                result += chunk
                if len(result) > 4 * limits["value_chars"] + 1024:
                    failure = "result too large"
                    open_fds.clear()
    seconds = time.monotonic() - started
    os.close(out_r)
    os.close(res_r)
    reply = {
        "output": bytes(output[: limits["output_bytes"]]).decode("utf-8", "replace"),
        "value": None,
        "error": None,
        "seconds": seconds,
    }
    if failure is None:
        try:  # a whole result: the child is exiting normally; it is reaped after the reply
            reply.update(json.loads(bytes(result)))
        except ValueError:
            status = finish(pid)
            if os.WIFSIGNALED(status):
                name = SIGNAL_NAMES.get(os.WTERMSIG(status), str(os.WTERMSIG(status)))
                failure = f"the program was killed by {name}" + (f" ({WHY[name]})" if name in WHY else "")
            else:
                failure = f"the program ended without a result (exit status {os.WEXITSTATUS(status)})"
    reply["status"] = "ok" if failure is None and reply["error"] is None else "error" if failure is None else "killed"
    if failure is not None:
        reply["error"] = failure
    return reply


def main():
    os.makedirs(WORK, exist_ok=True)
    os.chdir(WORK)
    try:  # no same-uid ptrace or /proc/<pid>/mem access to this process from the code's
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass
    spawned = spawn()
    send({"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    while True:
        request = receive()
        if request is None:
            return
        send({"taken": True})
        send(run(spawned, request["code"]))
        finish(spawned[0])
        sweep(spawned[0])  # after the reply: the caller does not wait for the clean-up
        spawned = spawn()


main()
