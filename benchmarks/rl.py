"""RL rollout fan-out and update throughput: how the rollout workers should use the CPUs.

    python benchmarks/rl.py [--prompts 8] [--samples 8] [--new-tokens 96] [--checkpoint URI]

The same rollouts (mathgen prompts, G samples each, the tiny preset's model) three ways:
- ours, threads: the flow's default runner: 2 worker threads, each sampling whole groups with
  torch.set_num_threads(1) (what `rollout_chunk` does), the model shared by both;
- ours, Dask: a local Dask cluster of 2 worker processes, 1 thread each, each loading the
  model once (what `runner.kind: dask` runs);
- anchor, one process: nanochat's chat_rl layout: one sampler that takes the groups one after
  the other with torch's intra-op threads = 2 (its batch of G rows is the only parallelism).
Printed: samples/s and tokens/s per side, their ratios to the anchor, and peak RSS. Then the
update: GRPO forward+backward tokens/s on those rollouts (1 thread), and RFT's.

The weights are random unless --checkpoint names a trained model, so every sample runs to
--new-tokens: the sides sample exactly the same number of tokens. Sides are timed in one run
after a warm-up, each the best of --repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def make_checkpoint(folder: str) -> str:
    """A tiny-preset-shaped GPT with random weights, with the sample tokenizer of a tiny lake
    (trained here on mathgen text)."""
    from models import checkpoint, lake
    from models.gpt import GPT, GPTConfig
    from models.tokenizer import train
    from tasks import mathgen

    texts = [p.question + "\n" + p.solution() for p in mathgen.problems(0, 400)]
    tok = train(texts, 1024)
    tok_uri = lake.join(folder, "tokenizer")
    tok.save(tok_uri)
    config = GPTConfig(vocab_size=1024)  # the tiny preset's shape with a smaller vocabulary
    torch.manual_seed(0)
    model = GPT(config)
    torch.nn.init.normal_(model.lm_head.weight, std=0.02)
    return checkpoint.save(
        lake.join(folder, "policy"),
        0,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(config), "tokenizer": tok_uri},
    )


def problems(n: int) -> list[dict]:
    from tasks import mathgen

    return [{"id": f"p{i}", "prompt": p.question, "answer": p.answer} for i, p in enumerate(mathgen.problems(7, n))]


def sample_groups(uri: str, batch: list[dict], samples: int, new_tokens: int, threads: int) -> list[dict]:
    """What a rollout task does for its chunk (module-level, so Dask can ship it)."""
    from tasks.rl.rollouts import Sampling, chunk_rows, policy

    torch.set_num_threads(threads)
    engine = policy(uri, "bench")
    sampling = Sampling(samples=samples, max_new_tokens=new_tokens, top_k=None, threads=threads)
    rows = chunk_rows(engine, batch, 0, sampling)
    return [
        {
            k: r[k]
            for k in (
                "prompt_id",
                "sample",
                "prompt_tokens",
                "tokens",
                "mask",
                "reward",
                "reward_strict",
                "reward_lenient",
                "length",
            )
        }
        for r in rows
    ]


def timed(fn, repeats: int) -> tuple[float, list[dict]]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpoint", help="a trained policy (default: random weights)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        uri = args.checkpoint or make_checkpoint(folder)
        probs = problems(args.prompts)
        chunks = [probs[i::2] for i in range(2)]
        run = lambda batch, threads: sample_groups(uri, batch, args.samples, args.new_tokens, threads)  # noqa: E731
        run(probs[:1], 1)  # warm-up: load the model, touch the kernels

        def threads_side() -> list[dict]:
            with ThreadPoolExecutor(2) as pool:
                return [r for part in pool.map(lambda c: run(c, 1), chunks) for r in part]

        def anchor_side() -> list[dict]:
            return run(probs, 2)

        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
            ) as cluster,
            Client(cluster) as client,
        ):
            client.gather(
                client.map(
                    sample_groups,
                    [uri, uri],
                    [probs[:1]] * 2,
                    [args.samples] * 2,
                    [args.new_tokens] * 2,
                    [1, 1],
                    pure=False,
                )
            )

            def dask_side() -> list[dict]:
                futures = client.map(
                    sample_groups, [uri] * 2, chunks, [args.samples] * 2, [args.new_tokens] * 2, [1, 1], pure=False
                )
                return [r for part in client.gather(futures) for r in part]

            sides = {
                "ours, threads (2 x 1 thread)": threads_side,
                "ours, Dask (2 processes)": dask_side,
                "anchor, one process (2 intra-op threads)": anchor_side,
            }
            results = {name: timed(fn, args.repeats) for name, fn in sides.items()}
            worker_peaks = client.run(peak_mb)
        torch.set_num_threads(1)

        anchor_s = results["anchor, one process (2 intra-op threads)"][0]
        print(f"rollouts: {args.prompts} prompts x {args.samples} samples x {args.new_tokens} new tokens")
        for name, (seconds, rows) in results.items():
            tokens = sum(r["length"] for r in rows)
            print(
                f"  {name:42s} {len(rows) / seconds:7.1f} samples/s {tokens / seconds:8.0f} tokens/s  x{anchor_s / seconds:.2f} vs anchor"
            )
        print(
            f"  peak RSS: this process {peak_mb():.0f} MB; Dask workers {', '.join(f'{v:.0f} MB' for v in worker_peaks.values())}"
        )

        from models import checkpoint
        from tasks.rl import RFTConfig, RLConfig
        from tasks.rl.update import Learner, optimizer_for

        rows = results["ours, threads (2 x 1 thread)"][1]
        for r in rows:  # synthetic rewards: half of each group right, so every group trains
            r["reward"] = r["reward_strict"] = float(r["sample"] % 2)
        for algorithm in ("grpo", "rft"):
            model, _ = checkpoint.load_model(uri)
            cfg = RLConfig(algorithm=algorithm, micro_batch=16, rft=RFTConfig(per_prompt=args.samples))
            learner = Learner(model, optimizer_for(model, cfg), cfg)
            seconds, stats = timed(lambda: learner.update(rows, 0), 1)  # noqa: B023 (timed here, in this iteration)
            tokens = sum(len(r["prompt_tokens"]) + len(r["tokens"]) for r in rows) if algorithm == "grpo" else None
            trained = stats["items"]
            print(
                f"update {algorithm}: {trained} sequences, {stats['trained_tokens']} trained tokens in {seconds:.2f} s"
                f" ({stats['trained_tokens'] / seconds:,.0f} trained tokens/s{f', {tokens / seconds:,.0f} tokens/s forward+backward' if tokens else ''})"
            )


if __name__ == "__main__":
    main()
