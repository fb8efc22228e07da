"""Every benchmark, one after the other: `make bench`, or `python -m benchmarks [NAME ...]`.

Each script runs our code and its anchor side by side in one run and prints the ratios and
peak memory (see each script's docstring and docs/benchmarks.md). Each runs in its own
process with its defaults, so one side's memory never counts against another benchmark's.
`chaos` (about ten minutes) and `prefect_scale` (10,000 tasks through a Prefect server) run only
when named.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = ("curate", "dedup", "tokenizer", "train", "generate", "serve", "harness", "sft", "rl", "tools", "gpu")
NAMED_ONLY = ("chaos", "prefect_scale")  # sample_crawl_truth.py runs in datatrove's own venv (its docstring)


def main(argv: list[str]) -> int:
    names = argv or list(DEFAULT)
    unknown = [n for n in names if n not in DEFAULT + NAMED_ONLY]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(DEFAULT + NAMED_ONLY)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== benchmarks/{name}.py", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent)
        print(f"=== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
