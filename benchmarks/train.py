"""Training throughput: our GPT against HuggingFace's Qwen3ForCausalLM, side by side.

Both models have the same shape and the same initial weights (ours, renamed with
models.gpt.to_hf), train on the same batches of the same token shards (our loader) with the
same AdamW, loss (cross-entropy in float32 on the logits) and clipping; only the model code
differs. Speed: both train in one process, step by step in turn (alternating which goes first),
so a busy shared machine slows both alike; tokens/s is the median over the timed steps. Peak
memory: each side alone in a fresh process (CUDA: max allocated; CPU: peak RSS above the RSS
before the model was built). On a GPU it also prints MFU against the bf16 dense peak.

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


def peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    exec, so a child would inherit the peak of the big parent that forked it."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def article_tokens(folder: Path) -> tuple[str, str]:
    """Token shards of the extraction benchmark's articles; returns (tokens folder, tokenizer)."""
    import pyarrow as pa

    from models import lake
    from models.tokenizer import train as train_tokenizer

    truth = json.loads((DATA / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)]
    tok = train_tokenizer(texts, 4096)
    tok_uri = str(folder / "tokenizers" / "articles")
    tok.save(tok_uri)
    tokens = str(folder / "tokens" / "articles" / "news")
    for split, docs in (("train", texts[:160]), ("val", texts[160:])):
        ids = tok.encode_batch(docs)
        table = pa.table(
            {
                "id": [f"{split}-{i}" for i in range(len(ids))],
                "tokens": pa.array(ids, pa.list_(pa.uint16())),
                "count": pa.array([len(x) for x in ids], pa.int32()),
            }
        )
        lake.write_dataset(lake.join(tokens, split), [table], kind="tokens")
    return tokens, tok_uri


class Side:
    """One model (ours or HF's) with its optimizer, ready to take training steps."""

    def __init__(self, name: str, model_cfg: Any, train_cfg: Any, device: Any, compile: bool, init: dict[str, Any]):
        import torch

        from models.gpt import GPT, hf_config, to_hf
        from models.train import optimizer_for

        self.name, self.train_cfg = name, train_cfg
        if name == "ours":
            self.model = GPT(model_cfg)
            self.model.load_state_dict(init)
        else:
            from transformers import Qwen3Config, Qwen3ForCausalLM

            self.model = Qwen3ForCausalLM(Qwen3Config(**hf_config(model_cfg), attn_implementation="sdpa"))
            self.model.load_state_dict(to_hf(init, model_cfg))
        self.model.to(device).train()
        # The same AdamW for both (fused on CUDA), with decay on matrices only.
        self.optimizer = optimizer_for(self.model, train_cfg, device)
        self.forward = torch.compile(self.model) if compile else self.model
        cuda = device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step(self, x: Any, y: Any, lr: float) -> float:
        """One optimizer step on (x, y); returns the loss (waiting for the device)."""
        import torch
        import torch.nn.functional as F

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            if self.name == "ours":
                loss = self.forward(x, y)
            else:
                logits = self.forward(input_ids=x).logits
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from tasks.config import load_config

    preset = load_config(args.preset)
    model_cfg = dataclasses.replace(preset.pretrain.model, vocab_size=max(preset.tokenizer.vocab_size, 4096))
    train_cfg = dataclasses.replace(
        preset.pretrain.train, device_batch=args.batch or preset.pretrain.train.device_batch
    )
    return model_cfg, train_cfg


def train(args: argparse.Namespace, names: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """Train the named sides on the same batches, alternating step by step (and which side
    goes first), so that both see the same load on a shared machine. Returns, per side, its
    step times and losses; with one side, also its peak memory."""
    import torch

    from models.data import TokenLoader
    from models.gpt import GPT
    from models.tokenizer import Tokenizer
    from models.train import learning_rate

    torch.manual_seed(0)
    device = torch.device(args.device)
    model_cfg, train_cfg = configs(args)
    if "hf" in names:
        import transformers  # noqa: F401  (before the RSS baseline: the library is not the model)
    base_rss = rss_bytes()
    init = GPT(model_cfg).state_dict()
    sides = [Side(n, model_cfg, train_cfg, device, args.compile, init) for n in names]
    del init
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: dict[str, Any] = {n: {"times": [], "losses": []} for n in names}
    bos = Tokenizer.load(args.tokenizer).bos_id
    with TokenLoader([args.tokens + "/train"], train_cfg.device_batch, model_cfg.seq_len, bos, device=device) as loader:
        for step in range(warmup + steps):
            x, y = loader.next_batch()
            for side in sides if step % 2 == 0 else sides[::-1]:
                started = time.perf_counter()
                out[side.name]["losses"].append(side.step(x, y, learning_rate(step, train_cfg)))
                if step >= warmup:
                    out[side.name]["times"].append(time.perf_counter() - started)
    if len(names) == 1:
        out[names[0]]["peak_bytes"] = (
            torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes() - base_rss
        )
    out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return out


def peak_memory(args: argparse.Namespace, side: str) -> int:
    """Peak training memory of one side, alone in a fresh process."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.train",
        "--side",
        side,
        "--preset",
        args.preset,
        "--tokens",
        args.tokens,
        "--tokenizer",
        args.tokenizer,
        "--device",
        args.device,
        "--compile" if args.compile else "--no-compile",
    ]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    # A fixed mmap threshold: glibc then returns every freed tensor to the OS at once, so the
    # peak RSS follows the live tensors instead of the allocator's history.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model shape and batch from this preset's pretrain section")
    parser.add_argument("--tokens", help="token folder tokens/{tokenizer}/{crawl} (default: news articles)")
    parser.add_argument("--tokenizer", help="its tokenizer folder")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile (default: on GPU)"
    )
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: the preset's device_batch)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per side (default: 30 on CPU, 50 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3; 10 when compiling)")
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # a child process measuring one side's peak memory
        result = train(args, [args.side], steps=3, warmup=2 if args.compile else 0)
        print("RESULT " + json.dumps({"peak_bytes": result[args.side]["peak_bytes"]}))
        return

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.compile = args.device == "cuda" if args.compile is None else args.compile
    args.steps = args.steps or (50 if args.device == "cuda" else 30)
    args.warmup = args.warmup if args.warmup is not None else (10 if args.compile else 3)
    from models.device import peak_flops

    with tempfile.TemporaryDirectory() as tmp:
        if not args.tokens:
            args.tokens, args.tokenizer = article_tokens(Path(tmp))
        result = train(args, ["ours", "hf"], args.steps, args.warmup)
        peaks = {side: peak_memory(args, side) for side in ("ours", "hf")}

    model_cfg, train_cfg = configs(args)
    tokens = train_cfg.device_batch * model_cfg.seq_len
    flops, peak = model_cfg.flops_per_token(), peak_flops(torch.device(args.device))
    print(
        f"{args.preset} model: {model_cfg.num_params() / 1e6:.2f}M params, {flops / 1e6:.1f} MFLOP/token, "
        f"{tokens} tokens/step on {result['device']}, compile={args.compile}, {args.steps} timed steps each, interleaved"
    )
    print(f"{'':6s}{'tokens/s':>12s}{'peak MiB':>10s}{'MFU':>8s}{'loss@end':>10s}")
    speed = {}
    for side, label in (("ours", "ours"), ("hf", "HF")):
        speed[side] = tokens / statistics.median(result[side]["times"])
        mfu = f"{flops * speed[side] / peak:.1%}" if peak else "-"
        print(
            f"{label:6s}{speed[side]:>12,.0f}{peaks[side] / 2**20:>10.1f}{mfu:>8s}{result[side]['losses'][-1]:>10.4f}"
        )
    step_ratios = [h / o for o, h in zip(result["ours"]["times"], result["hf"]["times"])]
    print(
        f"ratio ours/HF tokens/s: {speed['ours'] / speed['hf']:.2f}x (median step-by-step: {statistics.median(step_ratios):.2f}x; "
        f"target >= 1.0); peak memory ours/HF: {peaks['ours'] / max(peaks['hf'], 1):.2f}x"
    )
    # Same weights, same batches: the losses agree (the two compute the same function).
    drift = abs(result["ours"]["losses"][0] - result["hf"]["losses"][0])
    print(f"first-step loss difference: {drift:.1e}")


if __name__ == "__main__":
    main()
