"""Training throughput: our GPT against HuggingFace's Qwen3ForCausalLM, side by side.

Both models have the same shape and the same initial weights (ours, renamed with
models.gpt.to_hf), train on the same batches of the same token shards (our loader) with the
same AdamW, loss (cross-entropy in float32 on the logits) and clipping; only the model code
differs. Each side runs in its own process (alternating, `--repeats` times), which prints
tokens/s (median over the timed steps) and peak memory (CUDA: max allocated; CPU: peak RSS
above the RSS before the model was built). On a GPU it also prints MFU against the bf16 peak.

    python -m benchmarks.train                       # CPU: the tiny preset's model
    python -m benchmarks.train --preset small        # GPU: GPT-2-small size, bf16, torch.compile

Token shards: `--tokens` (a folder tokens/{tokenizer}/{crawl}) with `--tokenizer`, else the
extraction benchmark's news articles (real English text) encoded by a 4096-token tokenizer
trained on them. The model's vocabulary is the preset's; with the article tokens a larger
vocabulary just leaves ids unused, which changes no matmul shape.
Targets: ours/HF tokens/s >= 1.0 on CPU; MFU >= 40% for `small` on one H200.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def article_tokens(folder: Path) -> tuple[str, str]:
    """Token shards of the extraction benchmark's articles; returns (tokens folder, tokenizer)."""
    import pyarrow as pa

    from models.tokenizer import train as train_tokenizer
    from tasks import lake

    truth = json.loads((DATA / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)]
    tok = train_tokenizer(texts, 4096)
    tok_uri = str(folder / "tokenizers" / "articles")
    tok.save(tok_uri)
    tokens = str(folder / "tokens" / "articles" / "news")
    for split, docs in (("train", texts[:160]), ("val", texts[160:])):
        ids = tok.encode_batch(docs)
        table = pa.table({"id": [f"{split}-{i}" for i in range(len(ids))], "tokens": pa.array(ids, pa.list_(pa.uint16())),
                          "count": pa.array([len(x) for x in ids], pa.int32())})
        lake.write_dataset(lake.join(tokens, split), [table], kind="tokens")
    return tokens, tok_uri


def run_side(args: argparse.Namespace) -> dict[str, Any]:
    """Train one side for warmup + timed steps; return its measurements."""
    import torch
    import torch.nn.functional as F

    from models.data import TokenLoader
    from models.gpt import GPT, GPTConfig, hf_config, to_hf
    from models.tokenizer import Tokenizer
    from models.train import PEAK_FLOPS, optimizer_for, peak_flops
    from tasks.config import load_config

    torch.manual_seed(0)
    device = torch.device(args.device)
    preset = load_config(args.preset)
    model_cfg = dataclasses.replace(preset.pretrain.model, vocab_size=max(preset.tokenizer.vocab_size, 4096))
    train_cfg = dataclasses.replace(preset.pretrain.train, device_batch=args.batch or preset.pretrain.train.device_batch)
    if args.side == "hf":
        import transformers  # noqa: F401  (imported before the baseline RSS: only the model counts)
    base_rss = rss_bytes()
    ours = GPT(model_cfg)
    if args.side == "ours":
        model = ours.to(device)
    else:
        from transformers import Qwen3Config, Qwen3ForCausalLM

        model = Qwen3ForCausalLM(Qwen3Config(**hf_config(model_cfg))).to(device)
        model.config._attn_implementation = "sdpa"
        model.load_state_dict(to_hf(ours.state_dict(), model_cfg))
        del ours
    model.train()
    optimizer = optimizer_for(model, train_cfg, device) if args.side == "ours" else torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": train_cfg.weight_decay},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), fused=device.type == "cuda")
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if args.side == "ours":
            return forward(x, y)
        logits = forward(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokenizer = Tokenizer.load(args.tokenizer)
    times, losses = [], []
    with TokenLoader([args.tokens + "/train"], train_cfg.device_batch, model_cfg.seq_len, tokenizer.bos_id, device=device) as loader:
        for step in range(args.warmup + args.steps):
            started = time.perf_counter()
            x, y = loader.next_batch()
            with autocast:
                loss = loss_of(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())  # waits for the GPU
            if step >= args.warmup:
                times.append(time.perf_counter() - started)
    tokens = train_cfg.device_batch * model_cfg.seq_len
    tokens_per_s = tokens / statistics.median(times)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss)
    flops = model_cfg.flops_per_token()
    peak_flops_s = peak_flops(device)
    return {
        "side": args.side, "tokens_per_s": tokens_per_s, "peak_bytes": peak, "losses": losses,
        "params": model_cfg.num_params(), "flops_per_token": flops, "tokens_per_step": tokens,
        "mfu": flops * tokens_per_s / peak_flops_s if peak_flops_s else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "known_peaks": list(PEAK_FLOPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model shape and batch from this preset's pretrain section")
    parser.add_argument("--tokens", help="token folder tokens/{tokenizer}/{crawl} (default: news articles)")
    parser.add_argument("--tokenizer", help="its tokenizer folder")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile (default: on GPU)")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: the preset's device_batch)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on CPU, 50 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3; 10 when compiling)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating")
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # a child process: one side, JSON out
        print("RESULT " + json.dumps(run_side(args)))
        return

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.compile = args.device == "cuda" if args.compile is None else args.compile
    args.steps = args.steps or (50 if args.device == "cuda" else 30)
    args.warmup = args.warmup if args.warmup is not None else (10 if args.compile else 3)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.tokens:
            args.tokens, args.tokenizer = article_tokens(Path(tmp))
        results: dict[str, list[dict[str, Any]]] = {"ours": [], "hf": []}
        for _ in range(args.repeats):
            for side in ("ours", "hf"):
                cmd = [sys.executable, "-m", "benchmarks.train", "--side", side, "--preset", args.preset, "--tokens", args.tokens,
                       "--tokenizer", args.tokenizer, "--device", args.device, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--compile" if args.compile else "--no-compile"]
                if args.batch:
                    cmd += ["--batch", str(args.batch)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
                if line is None:
                    raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
                results[side].append(json.loads(line[len("RESULT "):]))
                r = results[side][-1]
                print(f"  {side:4s} {r['tokens_per_s']:>10,.0f} tok/s  peak {r['peak_bytes'] / 2**20:8.1f} MiB"
                      + (f"  MFU {r['mfu']:.1%}" if r["mfu"] else ""), flush=True)

    best = {side: max(rs, key=lambda r: r["tokens_per_s"]) for side, rs in results.items()}
    o, h = best["ours"], best["hf"]
    print(f"\n{args.preset} model: {o['params'] / 1e6:.2f}M params, {o['flops_per_token'] / 1e6:.1f} MFLOP/token, "
          f"{o['tokens_per_step']} tokens/step on {o['device']}, compile={args.compile}, best of {args.repeats}")
    print(f"{'':6s}{'tokens/s':>12s}{'peak MiB':>10s}{'MFU':>8s}{'loss@end':>10s}")
    for name, r in (("ours", o), ("HF", h)):
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
        print(f"{name:6s}{r['tokens_per_s']:>12,.0f}{r['peak_bytes'] / 2**20:>10.1f}{mfu:>8s}{r['losses'][-1]:>10.4f}")
    print(f"ratio ours/HF tokens/s: {o['tokens_per_s'] / h['tokens_per_s']:.2f}x (target >= 1.0); "
          f"peak memory ours/HF: {o['peak_bytes'] / max(h['peak_bytes'], 1):.2f}x")
    # Same weights, same batches: the two losses must agree (a check that the comparison is fair).
    drift = max(abs(a - b) for a, b in zip(o["losses"], h["losses"]))
    print(f"largest loss difference between the two over {len(o['losses'])} steps: {drift:.2e}")


if __name__ == "__main__":
    main()
