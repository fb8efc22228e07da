"""The GPU benchmark: training MFU, decoding and RL rollouts on one accelerator, in one run.

    python -m benchmarks.gpu            # on a GPU: the full run, under 5 minutes
    python -m benchmarks.gpu --quick    # the reduced run (what a CPU runs; tests/test_gpu_benchmark.py)

It prints the card's name, then:
1. **Training** of the `small` preset's model (GPT-2-small shape, 12 x 768, GQA, vocabulary
   50,304, context 1,024) in bf16 autocast, torch.compile'd: tokens/s and MFU against the
   card's dense bf16 peak looked up by name (models/device.py), beside HF's
   `Qwen3ForCausalLM` of the same shape with the same weights, batches, optimizer and loss
   (benchmarks/train.py's `Side`), compiled too, the two stepping in turn.
2. **Decoding** with the engine (models/engine.py: bf16 weights, the fixed-shape decode step
   compiled into CUDA graphs, models/decode.py) against the same model without a cache (the
   whole sequence through the model for every token) and against HF `generate` (bf16, its
   dynamic cache), at batch 1 (greedy) and 16 (16 samples of one prompt, temperature 1).
3. **RL rollouts/s**: a chunk of generated math problems (tasks/mathgen.py), 16 samples
   each, drawn and scored as a rollout task does (tasks/rl/rollouts.py `chunk_rows`: all
   prompts in one engine batch, tools on).

Decoding and rollouts use the `small` shape with a 4,096-piece tokenizer trained on the
extraction benchmark's articles (the engine needs a real tokenizer; a 50k vocabulary cannot be
trained on that little text), random weights with a scaled head (greedy choices are decisive).
On a CPU (or with --quick) every section runs at a toy size in well under a minute, so the GPU
run is never the first time this code runs; its figures say nothing about a GPU.
Each section checks the time left and reports "not measured: out of time" rather than
overrunning the 5 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

SHARED = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", REPO.parent / "shared" / "data"))
BUDGET_S = 300


@dataclasses.dataclass
class Size:
    """How big each section runs: the full GPU run, or the reduced one."""

    model: dict[str, int]
    train_batch: int
    train_steps: int
    train_warmup: int
    compile: bool
    new_tokens: int
    nocache_tokens: int
    rollout_prompts: int
    rollout_samples: int
    rollout_tokens: int


FULL = Size(
    model=dict(seq_len=1024, n_layer=12, n_head=12, n_kv_head=4, n_embd=768),
    train_batch=16,
    train_steps=20,
    train_warmup=8,
    compile=True,
    new_tokens=256,
    nocache_tokens=64,
    rollout_prompts=16,
    rollout_samples=16,
    rollout_tokens=160,
)
QUICK = Size(
    model=dict(seq_len=128, n_layer=2, n_head=2, n_kv_head=1, n_embd=64),
    train_batch=2,
    train_steps=2,
    train_warmup=1,
    compile=False,
    new_tokens=24,
    nocache_tokens=12,
    rollout_prompts=2,
    rollout_samples=4,
    rollout_tokens=24,
)


class Clock:
    def __init__(self, budget: float):
        self.start, self.budget = time.monotonic(), budget

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 1. training ------------------------------------------------------------------------------


def training(size: Size, device: torch.device, vocab: int) -> dict[str, Any]:
    """Ours and HF's Qwen3, same weights and batches, stepping in turn; tokens/s and MFU."""
    from benchmarks.train import Side
    from models.device import peak_flops
    from models.gpt import GPT, GPTConfig
    from models.train import TrainConfig, learning_rate

    model_cfg = GPTConfig(vocab_size=vocab, **size.model)
    train_cfg = TrainConfig(
        steps=size.train_warmup + size.train_steps, warmup_steps=2, lr=6e-4, device_batch=size.train_batch
    )
    torch.manual_seed(0)
    init = GPT(model_cfg).state_dict()
    sides = [Side(name, model_cfg, train_cfg, device, size.compile, init) for name in ("ours", "hf")]
    del init
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    losses: dict[str, list[float]] = {"ours": [], "hf": []}
    for step in range(size.train_warmup + size.train_steps):
        tokens = torch.randint(0, vocab, (size.train_batch, model_cfg.seq_len + 1), generator=generator).to(device)
        x, y = tokens[:, :-1], tokens[:, 1:]
        for side in sides if step % 2 == 0 else sides[::-1]:
            sync(device)
            started = time.perf_counter()
            losses[side.name].append(side.step(x, y, learning_rate(step, train_cfg)))  # .item() waits for the device
            if step >= size.train_warmup:
                times[side.name].append(time.perf_counter() - started)
    per_step = size.train_batch * model_cfg.seq_len
    peak = peak_flops(device)
    out: dict[str, Any] = {
        "params": model_cfg.num_params(),
        "flops_per_token": model_cfg.flops_per_token(),
        "tokens_per_step": per_step,
        "peak_flops": peak,
        "compile": size.compile,
    }
    for name in ("ours", "hf"):
        speed = per_step / statistics.median(times[name])
        out[name] = {
            "tokens_per_s": speed,
            "mfu": model_cfg.flops_per_token() * speed / peak if peak else None,
            "first_loss": losses[name][0],
            "last_loss": losses[name][-1],
        }
    out["ratio"] = out["ours"]["tokens_per_s"] / out["hf"]["tokens_per_s"]
    del sides
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# -- 2. decoding ------------------------------------------------------------------------------


def tokenizer_and_model(size: Size, device: torch.device, folder: Path) -> tuple[Any, Any, list[int]]:
    from models.device import resolve
    from models.gpt import GPT, GPTConfig
    from models.tokenizer import train as train_tokenizer

    truth = json.loads((SHARED / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)]
    tok = train_tokenizer(texts[:150], 4096)
    tok.save(str(folder / "tokenizer"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **size.model))
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.5)  # the zero-initialised head would make every logit equal
    model = resolve(str(device)).for_inference(model)
    return tok, model, [tok.bos_id, *tok.encode(texts[-1])[:32]]


def hf_twin(model: Any) -> Any:
    """HF's Qwen3ForCausalLM with our model's weights, dtype and device."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging

    from models.gpt import hf_config, to_hf

    logging.set_verbosity_error()
    param = next(model.parameters())
    hf = Qwen3ForCausalLM(Qwen3Config(**hf_config(model.config), attn_implementation="sdpa"))
    hf.load_state_dict(to_hf(model.state_dict(), model.config))
    return hf.to(device=param.device, dtype=param.dtype).eval()


def timed(fn: Any, device: torch.device, repeats: int = 2) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best, out


def decoding(size: Size, device: torch.device, tok: Any, model: Any, prompt: list[int]) -> dict[str, Any]:
    from transformers import GenerationConfig

    from models.engine import Engine

    engine = Engine(model, tok)  # decode "auto": compiled (CUDA graphs) on a GPU, eager on a CPU
    hf = hf_twin(model)
    n = size.new_tokens
    ids = torch.tensor([prompt], device=device)
    out: dict[str, Any] = {
        "decode": engine.decode,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "new_tokens": n,
    }
    for batch in (1, 16):
        greedy = batch == 1
        sampling = dict(temperature=0.0) if greedy else dict(temperature=1.0, top_k=50)
        ours = functools.partial(engine.generate, prompt, batch, max_new_tokens=n, stop=[], seed=0, **sampling)
        ours()  # compiles this shape's decode step (not timed)
        config = GenerationConfig(
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=not greedy,
            num_return_sequences=batch,
            eos_token_id=None,
            pad_token_id=0,
            **({} if greedy else dict(temperature=1.0, top_k=50)),
        )

        theirs = torch.inference_mode()(functools.partial(hf.generate, ids, generation_config=config))

        theirs()
        ours_s, samples = timed(ours, device)
        hf_s, generated = timed(theirs, device)
        row = {"ours_tokens_per_s": batch * n / ours_s, "hf_tokens_per_s": batch * n / hf_s}
        row["ratio"] = row["ours_tokens_per_s"] / row["hf_tokens_per_s"]
        if greedy:  # bf16 rounding may flip a near tie; report how far the two agree
            hf_tokens = generated[0, len(prompt) :].tolist()
            row["same_tokens_as_hf"] = next(
                (i for i, (a, b) in enumerate(zip(samples[0].tokens, hf_tokens)) if a != b), n
            )
        out[f"batch_{batch}"] = row

    m = size.nocache_tokens

    @torch.inference_mode()
    def nocache() -> list[int]:
        seq = list(prompt)
        stacked = model.stacked_weights()
        for _ in range(m):
            seq.append(int(model(torch.tensor([seq], device=device), stacked=stacked)[0, -1].argmax()))
        return seq

    nocache()
    nocache_s, _ = timed(nocache, device, repeats=1)
    out["nocache_tokens_per_s"] = m / nocache_s
    out["cache_vs_nocache"] = out["batch_1"]["ours_tokens_per_s"] / out["nocache_tokens_per_s"]
    return out


# -- 3. RL rollouts ---------------------------------------------------------------------------


def rollouts(size: Size, device: torch.device, tok: Any, model: Any) -> dict[str, Any]:
    from models.engine import Engine
    from tasks import mathgen
    from tasks.rl.rollouts import Sampling, chunk_rows

    engine = Engine(model, tok)
    problems = [
        {"id": f"p{i}", "prompt": p.question, "answer": p.answer}
        for i, p in enumerate(mathgen.problems(7, size.rollout_prompts))
    ]
    sampling = Sampling(samples=size.rollout_samples, max_new_tokens=size.rollout_tokens, top_k=50, device=str(device))
    chunk_rows(engine, problems[:1], 0, sampling)  # the shapes compile once, untimed
    seconds, rows = timed(lambda: chunk_rows(engine, problems, 0, sampling), device, repeats=1)
    return {
        "prompts": len(problems),
        "samples": len(rows),
        "rollouts_per_s": len(rows) / seconds,
        "tokens_per_s": sum(r["length"] for r in rows) / seconds,
        "mean_length": statistics.mean(r["length"] for r in rows),
    }


# -- the report -------------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    from models.device import resolve

    placement = resolve()
    device = placement.device
    size = QUICK if quick or device.type != "cuda" else FULL
    # The full run keeps to its 5 minutes; the reduced one always runs every section (it takes
    # seconds of CPU, though a loaded shared machine can stretch its wall time).
    clock = Clock(BUDGET_S if size is FULL else float("inf"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    result: dict[str, Any] = {
        "device": name,
        "reduced": size is QUICK,
        "dtype": str(placement.dtype).removeprefix("torch."),
        "torch": torch.__version__,
    }
    print(
        f"device: {name}; {result['dtype']}; torch {torch.__version__}; {'reduced run' if size is QUICK else 'full run'}",
        flush=True,
    )
    result["training"] = training(size, device, 50304 if size is FULL else 4096)
    with tempfile.TemporaryDirectory() as tmp:
        tok, model, prompt = tokenizer_and_model(size, device, Path(tmp))
        for section, fn in (
            ("decoding", lambda: decoding(size, device, tok, model, prompt)),
            ("rollouts", lambda: rollouts(size, device, tok, model)),
        ):
            if clock.left() < 60:
                result[section] = "not measured: out of time"
                continue
            result[section] = fn()
    result["seconds"] = round(time.monotonic() - clock.start, 1)
    return result


def report(r: dict[str, Any]) -> str:
    t = r["training"]
    pct = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731
    lines = [
        f"card: {r['device']} ({'reduced run: toy sizes, not GPU figures' if r['reduced'] else 'full run'}), {r['seconds']} s",
        f"training ({t['params'] / 1e6:.1f}M params, {t['tokens_per_step']} tokens/step, {r['dtype']}, compile={t['compile']}, "
        f"peak {t['peak_flops'] / 1e12:.0f} TFLOP/s)"
        if t["peak_flops"]
        else f"training ({t['params'] / 1e6:.1f}M params, {t['tokens_per_step']} tokens/step, {r['dtype']}, compile={t['compile']}; MFU: not measured, no known peak for this device)",
        f"  ours {t['ours']['tokens_per_s']:,.0f} tokens/s, MFU {pct(t['ours']['mfu'])} | HF Qwen3 {t['hf']['tokens_per_s']:,.0f} tokens/s, "
        f"MFU {pct(t['hf']['mfu'])} | ours/HF {t['ratio']:.2f}x (target MFU >= 40% on an H100/H200)",
    ]
    d = r["decoding"]
    if isinstance(d, str):
        lines.append(f"decoding: {d}")
    else:
        lines.append(f"decoding ({d['new_tokens']} new tokens, {d['dtype']}, engine decode={d['decode']}):")
        for batch in (1, 16):
            row = d[f"batch_{batch}"]
            agree = f", first {row['same_tokens_as_hf']} tokens identical to HF's" if "same_tokens_as_hf" in row else ""
            lines.append(
                f"  batch {batch:2d}: ours {row['ours_tokens_per_s']:,.0f} tokens/s, HF generate {row['hf_tokens_per_s']:,.0f} "
                f"tokens/s: {row['ratio']:.2f}x{agree} (target >= 1.0x)"
            )
        lines.append(
            f"  without the cache: {d['nocache_tokens_per_s']:,.0f} tokens/s (with it, batch 1: {d['cache_vs_nocache']:.1f}x)"
        )
    ro = r["rollouts"]
    lines.append(
        f"RL rollouts: {ro}"
        if isinstance(ro, str)
        else f"RL rollouts: {ro['rollouts_per_s']:,.1f} rollouts/s ({ro['prompts']} prompts x {ro['samples'] // ro['prompts']} samples in one "
        f"batch, {ro['tokens_per_s']:,.0f} tokens/s, mean {ro['mean_length']:.0f} tokens)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the reduced run, even on a GPU")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    result = run(args.quick)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
