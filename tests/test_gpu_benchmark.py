"""benchmarks/gpu.py's reduced run, so that the GPU run is never the first time its code runs:
every section (training ours vs HF, decoding with and without the cache and vs HF generate at
batch 1 and 16, RL rollouts) runs end to end on the CPU and reports sane figures. (Speed is
not asserted: timings belong to benchmarks, not tests.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_reduced_gpu_benchmark_runs_every_section(tmp_path, shared_data):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=540,
        env=dict(os.environ, OMP_NUM_THREADS="1", CRAWL2CHAT_SHARED_DATA=str(shared_data)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["reduced"] and r["device"].startswith("cpu")
    t = r["training"]
    for side in ("ours", "hf"):
        assert t[side]["tokens_per_s"] > 0 and t[side]["mfu"] is None  # no peak for a CPU: not measured, never invented
    assert t["ours"]["first_loss"] == pytest.approx(
        t["hf"]["first_loss"], rel=1e-4
    )  # the same model, weights and batch
    d = r["decoding"]
    assert d["decode"] == "eager" and d["batch_16"]["ours_tokens_per_s"] > 0 and d["nocache_tokens_per_s"] > 0
    assert (
        d["batch_1"]["same_tokens_as_hf"] == d["new_tokens"]
    )  # float32 on a CPU: greedy decoding agrees token for token
    ro = r["rollouts"]
    assert ro["samples"] == ro["prompts"] * 4 and ro["rollouts_per_s"] > 0
    assert "card: cpu" in done.stdout and "MFU: not measured" in done.stdout and "RL rollouts:" in done.stdout
