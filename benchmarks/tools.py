"""Tool-call benchmark: the code tool's warm sandbox pool against starting Python per call,
and the calculator.

    python benchmarks/tools.py [--rounds 10] [--warm 30] [--cold 5]

Four ways to answer the same model-written programs (a word problem's few lines, a loop,
a print), one call at a time, as the engine makes them:
- pool:       models.sandbox.Sandbox(size=2).run(code): a warm sandboxed interpreter hands
              the code to a child it forked ahead of the call (namespaces + seccomp + limits);
- cold:       subprocess.run([sys.executable, "-c", code]): the anchor the issue names, a
              fresh Python per call, with no isolation at all;
- cold+bwrap: a fresh Python per call under the same bubblewrap command line as the pool's
              (the isolation without the pool: what the pool saves);
- calculator: models.tools.calculate on the programs' arithmetic, in-process.
The sides run interleaved round by round (the machine is shared: each sees the same load).
Printed: calls/s, p50 and p99 latency per side, the pool's speed-up over each cold side
(target >= 10x over `cold`), and the pool's resident memory (its processes, read from /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import sandbox as sandboxes  # noqa: E402
from models.tools import calculate  # noqa: E402

PROGRAMS = [
    ("eggs = 16 - 3 - 4\neggs * 2", "(16 - 3 - 4) * 2"),
    ("total = 0\nfor price in [12, 7, 30, 5]:\n    total += price\nprint(total)\ntotal // 4", "(12 + 7 + 30 + 5) // 4"),
    ("speed = 240 / 3\nround(speed * 5)", "240 / 3 * 5"),
    ("sum(i * i for i in range(1000))", "332833500"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pool_rss_mb(box: sandboxes.Sandbox) -> float:
    """Resident memory of the pool's processes (bwrap and the interpreters under it)."""
    pids = [w.proc.pid for w in list(box._idle)]
    total = 0
    while pids:
        pid = pids.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    pids += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm", type=int, default=30, help="pool calls per round")
    parser.add_argument("--cold", type=int, default=5, help="cold calls per round, per cold side")
    args = parser.parse_args()

    layers = sandboxes.detect()
    print(f"sandbox layers: {layers.describe()}; interpreter {sandboxes.interpreter()}; host Python {sys.executable}")
    bwrap_cold = None
    if layers.namespaces:
        base = sandboxes._bwrap_args(sandboxes.shutil.which("bwrap"), sandboxes.interpreter(), 16 << 20)
        program = sandboxes.seccomp_program() if layers.seccomp else None

        def bwrap_cold(code: str) -> None:
            proc = sandboxes._start(
                [*base, "-I", "-S", "-c", code],
                program,
                layers.unprivileged,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            proc.communicate(timeout=30)

    box = sandboxes.Sandbox(size=2, isolation=None if layers.namespaces else "limits")
    time.sleep(1.0)  # let the second worker finish starting
    sides = {
        "pool": lambda code, expr: box.run(code),
        "cold": lambda code, expr: subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30),
        "cold+bwrap": (lambda code, expr: bwrap_cold(code)) if bwrap_cold else None,
        "calculator": lambda code, expr: calculate(expr),
    }
    sides = {k: v for k, v in sides.items() if v is not None}
    for code, _expr in PROGRAMS:  # warm-up, and a check that the pool's answers are right
        result = box.run(code)
        assert result.ok and (result.value or result.output), result
    times: dict[str, list[float]] = {k: [] for k in sides}
    wall: dict[str, float] = {k: 0.0 for k in sides}
    for _ in range(args.rounds):
        for name, call in sides.items():
            n = args.cold if name.startswith("cold") else args.warm * (10 if name == "calculator" else 1)
            start = time.perf_counter()
            for i in range(n):
                code, expr = PROGRAMS[i % len(PROGRAMS)]
                t = time.perf_counter()
                call(code, expr)
                times[name].append(time.perf_counter() - t)
            wall[name] += time.perf_counter() - start
    rss = pool_rss_mb(box)
    box.close()

    print(f"\n{'side':<12} {'calls':>6} {'calls/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for name, values in times.items():
        print(
            f"{name:<12} {len(values):>6} {len(values) / wall[name]:>10.1f} {1000 * statistics.median(values):>9.3f} "
            f"{1000 * percentile(values, 0.99):>9.3f}"
        )
    pool = statistics.median(times["pool"])
    for name in ("cold", "cold+bwrap"):
        if name in times:
            ratio = statistics.median(times[name]) / pool
            rate = (len(times["pool"]) / wall["pool"]) / (len(times[name]) / wall[name])
            print(
                f"pool vs {name}: {ratio:.1f}x lower p50 latency, {rate:.1f}x the calls/s"
                + (f" (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})" if name == "cold" else "")
            )
    print(f"pool memory: {rss:.0f} MB resident for 2 warm interpreters (bwrap included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
