"""models/sandbox.py and the engine's code tool, fed what a hostile model could write.

Every hostile case runs through the real engine (a scripted model writes the program, the
engine runs it in the real sandbox and forces the result into the stream) and must end with
a clear error in the stream, then the same engine must still answer `print(6 * 7)` with 42.
The host side is checked too: the files, sockets, secrets and processes the code went for
are untouched.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from models import sandbox as sandboxes
from models.engine import Engine
from models.sandbox import Limits, Result, Sandbox, SandboxUnavailable
from models.tokenizer import Tokenizer, train
from tests.test_engine import Scripted, prompt_of, random_model

PROJECT = Path(__file__).resolve().parents[1]
CANARY = f"crawl2chat-sandbox-canary-{uuid.uuid4().hex}"
LIMITS = Limits(
    wall_s=3.0,
    cpu_s=3,
    memory_bytes=256 << 20,
    file_bytes=4 << 20,
    tmp_bytes=16 << 20,
    processes=16,
    output_bytes=16 << 10,
)


@pytest.fixture(scope="module")
def layers():
    found = sandboxes.detect()
    if not found.namespaces:
        pytest.fail(
            f"no namespaces for the sandbox on this machine: {found.reason} (`make system-packages` installs bubblewrap)"
        )
    return found


@pytest.fixture(scope="module")
def box(layers):
    os.environ["CRAWL2CHAT_TEST_CANARY"] = CANARY  # in our environment before the pool starts
    with Sandbox(size=2, limits=LIMITS) as pool:
        yield pool
    os.environ.pop("CRAWL2CHAT_TEST_CANARY", None)


@pytest.fixture(scope="module")
def tok(shared_data) -> Tokenizer:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return train([truth[k]["articleBody"] for k in sorted(truth)][:100], 1024)


@pytest.fixture(scope="module")
def model(tok):
    return random_model(tok, seq_len=1024)


def run_python(tok, model, box, code: str):
    """The model writes `<|python_start|> code <|python_end|>`, then ends its turn after the
    forced output; returns (output text, sample)."""
    sp = tok.special
    end = sp("<|assistant_end|>")
    prompt = prompt_of(tok, "Compute it.")
    call = [sp("<|python_start|>"), *tok.encode(code), sp("<|python_end|>")]
    engine = Engine(Scripted(model, {}, end, sequence=prompt + call), tok, code=box)
    (sample,) = engine.generate(prompt, 1, max_new_tokens=1024 - len(prompt), temperature=0)
    assert sample.tokens[: len(call)] == call and sample.mask[: len(call)] == [1] * len(call)
    output = sample.tokens[len(call) : -1]
    assert output[0] == sp("<|python_output_start|>") and output[-1] == sp("<|python_output_end|>")
    assert sample.mask[len(call) : -1] == [0] * len(output) and sample.tokens[-1] == end
    # Whatever the program printed, the only specials are the output's frame.
    assert [t for t in output if tok.is_special(t)] == [output[0], output[-1]]
    return tok.decode(output), sample


def still_serving(tok, model, box):
    text, sample = run_python(tok, model, box, "print(6 * 7)")
    assert text == "42" and sample.tool_calls[0].ok


# -- the tool in the engine ------------------------------------------------------------------


def test_a_python_call_gets_its_output_and_the_value_of_its_last_expression(tok, model, box):
    text, sample = run_python(tok, model, box, "rows = [3, 1, 2]\nprint(sorted(rows))\nsum(rows) * 2")
    assert text == "[1, 2, 3]\n12"
    call = sample.tool_calls[0]
    assert call.tool == "python" and call.ok and call.query.startswith("rows = [3, 1, 2]")


def test_an_exception_gives_its_last_line_after_what_was_printed(tok, model, box):
    text, sample = run_python(tok, model, box, "print('start')\n{}['missing']")
    assert text == "start\nKeyError: 'missing'" and not sample.tool_calls[0].ok
    text, _ = run_python(tok, model, box, "def f(:\n  pass")
    assert text.startswith("SyntaxError:")


def test_each_call_starts_clean(tok, model, box):
    run_python(tok, model, box, "import builtins\nbuiltins.leak = 1\nopen('left-over', 'w').write('x')")
    for _ in range(3):  # whichever worker answers
        text, _ = run_python(tok, model, box, "import os, builtins\n(hasattr(builtins, 'leak'), os.listdir('.'))")
        assert text == "(False, [])"


def test_printing_the_special_tokens_text_gives_text_not_tokens(tok, model, box):
    specials = "<|assistant_end|><|python_output_end|><|bos|><|python_start|>"
    text, sample = run_python(tok, model, box, f"print({specials!r})")
    assert text == specials and sample.finished == "stop"


def test_unicode_and_nul_bytes_in_code(tok, model, box):
    text, _ = run_python(tok, model, box, "s = 'héllo ✓ 日本 🙂'\nprint(s, len(s))")
    assert text == "héllo ✓ 日本 🙂 12"
    text, sample = run_python(tok, model, box, "print('a\x00b')")
    assert text.endswith("source code string cannot contain null bytes") and not sample.tool_calls[0].ok
    # Straight into the pool: a lone surrogate (no tokenizer writes one) is an error too.
    result = box.run("print('\ud800')")
    assert result.status in ("error", "ok") and (result.error or result.output)
    still_serving(tok, model, box)


def test_an_old_tokenizer_has_no_code_tool_and_its_checkpoint_still_runs(tmp_path, monkeypatch):
    """A checkpoint trained with a tokenizer of the previous release loads with that
    tokenizer; the engine knows the tool is not there (no ids to call it with)."""
    from models import checkpoint
    from models import tokenizer as module

    docs = ["The river runs past the old mill. " * 20, "Numbers like 12 and 345 are split. " * 20]
    monkeypatch.setattr(module, "SPECIALS", tuple(s for s in module.SPECIALS if s not in module.LATER_SPECIALS))
    old = train(docs, 320)
    monkeypatch.undo()
    old.save(str(tmp_path / "tok"))
    model = random_model(old)
    uri = checkpoint.save(
        str(tmp_path / "run"),
        1,
        model=model.state_dict(),
        config={"model": vars(model.config), "tokenizer": str(tmp_path / "tok")},
    )
    engine = Engine.from_checkpoint(uri)
    assert engine.tokenizer.vocab_size == old.vocab_size and not engine.tokenizer.has_special("<|python_start|>")
    assert "python" not in engine._closes
    (sample,) = engine.generate(prompt_of(engine.tokenizer, "The river"), 1, max_new_tokens=8, temperature=0)
    assert len(sample.tokens) == 8


def test_a_prompt_that_opens_the_call_asks_for_code_and_the_rows_start_inside_it(tok, model, box):
    sp = tok.special
    end = sp("<|assistant_end|>")
    prompt = [*prompt_of(tok, "Compute it."), sp("<|python_start|>")]
    body = [*tok.encode("print(2 ** 10)"), sp("<|python_end|>")]
    engine = Engine(Scripted(model, {}, end, sequence=prompt + body), tok, code=box)
    (sample,) = engine.generate(prompt, 1, max_new_tokens=64, temperature=0)
    assert sample.tokens[: len(body)] == body and sample.tool_calls[0].query == "print(2 ** 10)"
    assert tok.decode(sample.tokens[len(body) :]) == "1024" and sample.tokens[len(body)] == sp(
        "<|python_output_start|>"
    )


def test_a_tool_that_is_off_answers_with_an_error(tok, model, box):
    engine = Engine(model, tok, code=box, tools=("calculator",))
    call = engine.run_tool("python", "print(1)")
    assert call.result == "error: the python tool is off" and not call.ok
    assert (
        Engine(model, tok, tools=("python",)).run_tool("calculator", "1+1").result
        == "error: the calculator tool is off"
    )


# -- hostile programs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, expected",
    [
        pytest.param(
            "import os\nwhile True:\n    os.fork()", r"Resource temporarily unavailable|timed out", id="fork-bomb"
        ),
        pytest.param(
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
            r"timed out",
            id="fork-bomb-that-never-ends",
        ),
        pytest.param("x = bytearray(2**34)", r"MemoryError", id="memory-bomb-at-once"),
        pytest.param("a = []\nwhile True:\n    a.append(bytearray(10**7))", r"MemoryError", id="memory-bomb-growing"),
        pytest.param("while True:\n    pass", r"timed out|SIGXCPU", id="infinite-loop"),
        pytest.param(
            "import threading\ndef spin():\n    while True:\n        pass\nts = [threading.Thread(target=spin) for _ in range(4)]\n"
            "for t in ts:\n    t.start()\nfor t in ts:\n    t.join()",
            r"timed out|SIGXCPU",
            id="busy-threads",
        ),
        pytest.param(
            "import threading, time\nfor _ in range(200):\n    threading.Thread(target=time.sleep, args=(5,)).start()",
            r"can't start new thread",
            id="thread-bomb",
        ),
        pytest.param("import ctypes\nctypes.string_at(0)", r"SIGSEGV", id="ctypes-segfault"),
        pytest.param("print('x' * 100_000_000)", r"output over", id="100MB-of-output"),
        pytest.param("while True:\n    print('y' * 1000)", r"output over", id="endless-output"),
        pytest.param(
            "import os\nos.kill(os.getppid(), 9)", r"sandbox exited|did not answer|ended without", id="kill-the-parent"
        ),
        pytest.param(
            "import os\nos.kill(-1, 9)", r"sandbox exited|did not answer|killed by SIGKILL", id="kill-everything"
        ),
        pytest.param(
            "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)",
            r"SIGSEGV|RecursionError|MemoryError|SystemError|timed out",
            id="stack-overflow",
        ),
        pytest.param("open('big', 'wb').write(b'0' * (64 << 20))", r"File too large|MemoryError", id="one-huge-file"),
        pytest.param(
            "for i in range(100):\n    open(f'part{i}', 'wb').write(b'0' * (3 << 20))",
            r"No space left on device",
            id="fill-the-disk",
        ),
        pytest.param(
            "import zipfile\nwith zipfile.ZipFile('bomb.zip', 'w', zipfile.ZIP_DEFLATED) as z:\n"
            "    with z.open('zeros', 'w') as f:\n        for _ in range(48):\n            f.write(bytes(1 << 20))\n"
            "import os\nprint(os.path.getsize('bomb.zip') < 1 << 20)\nzipfile.ZipFile('bomb.zip').extractall('out')",
            r"True\n.*File too large",
            id="zip-bomb-to-disk",
        ),
        pytest.param("raise SystemExit(3)", r"SystemExit: 3", id="exit"),
        pytest.param("import os\nos._exit(0)", r"ended without a result", id="hard-exit"),
        pytest.param(
            "import os\nos.close(1)\nos.close(2)\nos.close(3)\nwhile True:\n    pass",
            r"killed by SIGKILL|timed out|ended without|SIGXCPU",  # wall and CPU limits are both 3 s
            id="close-the-pipes-and-spin",
        ),
    ],
)
def test_hostile_code_ends_in_a_clear_error_and_the_engine_still_serves(tok, model, box, code, expected):
    import re

    started = time.monotonic()
    text, sample = run_python(tok, model, box, code)
    assert re.search(expected, text, re.S), text
    assert not sample.tool_calls[0].ok
    assert time.monotonic() - started < LIMITS.wall_s + sandboxes.MARGIN_S + 5  # bounded, whatever the code does
    still_serving(tok, model, box)
    # Nothing the code started survives its call: the namespace holds init, the server, the child.
    text, _ = run_python(tok, model, box, "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit())")
    assert text == "[1, 2, 3]" or len(json.loads(text)) == 3, text


def test_the_project_folder_and_the_hosts_tmp_are_out_of_reach(tok, model, box, tmp_path):
    target = PROJECT / f"pwned-{uuid.uuid4().hex}"
    host_tmp = Path("/tmp") / f"crawl2chat-host-{uuid.uuid4().hex}"
    host_tmp.write_text("host secret")
    try:
        text, _ = run_python(tok, model, box, f"open({str(target)!r}, 'w').write('x')")
        assert text.startswith("FileNotFoundError") and not target.exists()
        text, _ = run_python(tok, model, box, f"open({str(host_tmp)!r}).read()")
        assert text.startswith("FileNotFoundError")
        text, _ = run_python(
            tok,
            model,
            box,
            f"open('/tmp/{host_tmp.name}-new', 'w').write('x')\nopen({str(host_tmp)!r}, 'w').write('overwritten')",
        )
        assert text == "11"  # written in the sandbox's own /tmp
        assert host_tmp.read_text() == "host secret" and not Path(f"/tmp/{host_tmp.name}-new").exists()
        text, _ = run_python(tok, model, box, "import os\nsorted(os.listdir('/'))")
        assert text == "['bin', 'dev', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr']"
        text, _ = run_python(tok, model, box, "open('/usr/bin/new', 'w')")
        assert text.startswith("OSError: [Errno 30] Read-only file system") or text.startswith("PermissionError")
    finally:
        host_tmp.unlink()


def test_os_system_cannot_touch_anything_outside_its_temporary_folder(tok, model, box, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    commands = (
        f"id -u; touch {PROJECT}/x 2>&1; touch {keep} 2>&1; rm -rf {tmp_path} 2>&1; "
        "rm -f /usr/bin/env /tmp/* 2>/dev/null; echo inside > /tmp/inside.txt; cat /tmp/inside.txt; ls /etc 2>&1 | head -1"
    )
    text, _ = run_python(tok, model, box, f"import os\nos.system({commands!r})")
    lines = text.splitlines()
    assert lines[0] == "65534" and "inside" in lines and lines[-1] == "0", text
    assert keep.read_text() == "still here" and not (PROJECT / "x").exists()
    assert Path("/usr/bin/env").exists()  # the read-only bind held
    still_serving(tok, model, box)


def test_reading_etc_shadow_and_secrets_fails(tok, model, box):
    text, _ = run_python(tok, model, box, "open('/etc/shadow').read()")
    assert text.startswith("FileNotFoundError")
    text, _ = run_python(tok, model, box, "open('/root/.bashrc').read()")
    assert text.startswith(("FileNotFoundError", "PermissionError"))


def test_the_environment_holds_no_secret_of_ours(tok, model, box):
    assert os.environ["CRAWL2CHAT_TEST_CANARY"] == CANARY
    code = (
        "import os\nfound = [dict(os.environ)]\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
        "            found.append(open(f'/proc/{p}/environ', 'rb').read())\n        except OSError as e:\n            found.append(str(e))\nprint(found)"
    )
    text, _ = run_python(tok, model, box, code)
    assert CANARY not in text and "CRAWL2CHAT" not in text and "AWS_" not in text
    assert "'PATH': '/usr/bin:/bin'" in text  # the environment it does get


def test_a_loopback_server_of_the_host_cannot_be_reached(tok, model, box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        text, sample = run_python(
            tok, model, box, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
        )
        assert text.startswith(("PermissionError", "ConnectionRefusedError", "OSError")) and not sample.tool_calls[0].ok
        text, _ = run_python(tok, model, box, "import socket\nsocket.getaddrinfo('example.org', 80)")
        assert text.startswith("socket.gaierror")  # no resolver, no network
    finally:
        thread.join()
        server.close()
    assert not accepted


def test_seccomp_refuses_the_calls_the_filter_lists(tok, model, box, layers):
    if not layers.seccomp:
        pytest.skip("no seccomp filter on this architecture")
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nout = []\n"
        "for nr in (101, 272, 165, 321):  # ptrace, unshare, mount, bpf\n"
        "    out.append((libc.syscall(nr, 0, 0, 0, 0), ctypes.get_errno()))\n"
        "import socket\nsocket.socketpair()\nout"
    )
    text, _ = run_python(tok, model, box, code)
    assert text == "[(-1, 1), (-1, 1), (-1, 1), (-1, 1)]"  # EPERM each; AF_UNIX pairs still work


def test_limits_are_set_in_the_child(tok, model, box):
    code = "import resource as r\n[r.getrlimit(getattr(r, n))[0] for n in ('RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_CPU')]"
    text, _ = run_python(tok, model, box, code)
    assert text == str([LIMITS.memory_bytes, LIMITS.file_bytes, LIMITS.processes, LIMITS.open_files, LIMITS.cpu_s])


# -- the pool --------------------------------------------------------------------------------


def test_concurrent_calls_from_threads_each_get_their_own_answer(box):
    results: dict[int, Result] = {}

    def call(i):
        results[i] = box.run(f"import time\ntime.sleep(0.05)\n{i} * {i}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: r.value for i, r in results.items()} == {i: str(i * i) for i in range(6)}


def test_an_interpreter_that_died_before_taking_the_code_is_replaced_and_the_code_runs(layers, monkeypatch):
    """A warm interpreter can die idle, after the pool's liveness check: the code it never
    took goes to a fresh one, once; a dead one on its own says it never had the code."""

    def kill(worker):  # bwrap first, then wait for the interpreter inside to be gone too
        worker.proc.kill()
        worker.proc.wait()
        while os.read(worker.proc.stdout.fileno(), 4096):  # EOF: nothing inside holds its pipe
            pass

    with Sandbox(size=1, limits=LIMITS) as pool:
        (worker,) = pool._idle
        kill(worker)
        with pytest.raises(sandboxes.NotDelivered):
            worker.run("print(1)")
        dead = sandboxes.Worker(pool.layers, pool.limits)
        kill(dead)
        pool._idle.clear()
        pool._idle.append(dead)
        monkeypatch.setattr(sandboxes.Worker, "alive", lambda self: self is not dead)
        result = pool.run("print(6 * 7)")
        assert result.ok and result.text() == "42"


def test_code_too_long_or_not_text_is_refused_before_it_runs(box):
    assert box.run("1" * (sandboxes.MAX_CODE_CHARS + 1)).error.startswith("error: code longer than")
    assert box.run(b"print(1)").error == "error: code must be text"  # type: ignore[arg-type]


def test_without_bubblewrap_the_sandbox_refuses_unless_asked_for_limits_only(monkeypatch):
    monkeypatch.setattr(sandboxes.shutil, "which", lambda name: None)
    found = sandboxes._probe()
    assert not found.namespaces and "not installed" in found.reason
    monkeypatch.setitem(sandboxes._DETECTED, "layers", found)
    with pytest.raises(SandboxUnavailable, match="CRAWL2CHAT_SANDBOX=limits"):
        Sandbox(size=1)
    with Sandbox(size=1, isolation="limits", limits=LIMITS) as weak:
        assert not weak.layers.namespaces and weak.layers.limits
        assert weak.run("sum(range(10))").value == "45"
        assert "MemoryError" in weak.run("bytearray(2**34)").error
        assert re.search(r"timed out|SIGXCPU", weak.run("while True: pass").error)  # both limits are 3 s
        if os.geteuid() == 0 and weak.layers.unprivileged:
            assert weak.run("import os\nos.getuid()").value == "65534"
        assert weak.run("import os\nos.getcwd()").value.startswith("'/tmp/crawl2chat-sandbox-")


def test_where_no_sandbox_can_run_the_engine_says_so_and_runs_nothing(tok, model, monkeypatch):
    monkeypatch.setitem(
        sandboxes._SHARED, "box", SandboxUnavailable("no isolated sandbox here (bwrap failed: no user namespaces)")
    )
    call = Engine(model, tok).run_tool("python", "print(1)")
    assert (
        call.result
        == "error: the code tool is unavailable: no isolated sandbox here (bwrap failed: no user namespaces)"
    )
    assert not call.ok


def test_interpreters_outlive_the_threads_that_asked_for_them(layers):
    """bwrap's --die-with-parent fires when the *thread* that started it exits; the pool
    starts every interpreter from threads of its own, so one asked for by a short-lived thread
    (a Prefect task's) stays warm after that thread is gone, and refills stay alive."""
    with Sandbox(size=2, limits=LIMITS) as pool:
        done: dict[str, Result] = {}
        asker = threading.Thread(target=lambda: done.setdefault("r", pool.run("print(1)")))
        asker.start()
        asker.join()
        assert done["r"].ok
        time.sleep(0.5)  # the asking thread has ended; a killed interpreter would be dead by now
        assert len(pool._idle) == 2 and all(w.alive() for w in pool._idle)
        assert pool.run("6 * 7").value == "42"
