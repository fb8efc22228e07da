"""Generation benchmark: our KV-cache engine against no cache and against HF `generate`.

    python benchmarks/generate.py [--new-tokens 256] [--repeats 3] [--checkpoint URI]

One model, one prompt, greedy decoding, one CPU thread, three ways:
- ours:     models.engine.Engine (prefill once, then one token per step from the KV cache);
- no cache: the same model (with the engine's stacked weights), the whole sequence through
            the model again for every new token;
- HF:       transformers' Qwen3ForCausalLM.generate on the folder models/export.py wrote from
            the same checkpoint (its own dynamic KV cache), greedy.
The three token sequences must be identical (checked); printed are tokens/s, the ratios, and
each side's peak memory. Then a batch line: 16 samples of the prompt at temperature 1 / top-k 50
(ours: one prefill shared by the rows; HF: num_return_sequences=16), tokens/s only, since
sampled tokens cannot match across implementations.

The model is the tiny preset's size (GPTConfig defaults: 4 layers, 4 heads, 128 wide, 4,096
tokens; 1.9M parameters, 1.4M outside the embedding table) with its context raised to 512 so
that prompt + 256 new tokens fit. Its weights are random (the head scaled so that greedy
choices are decisive) unless --checkpoint names a trained one. The sides are timed in one
process, interleaved round by round (the machine is shared: each side sees the same load),
after a warm-up run; the best of `--repeats` rounds counts. Memory is measured per side in a
fresh process: peak RSS (Python, torch, the model, and transformers for HF) and its growth
while generating (from after one forward pass, so kernel set-up is not counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

SHARED = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", REPO.parent / "shared" / "data"))
BATCH = 16


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's, inherited at fork)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


# -- the three sides ----------------------------------------------------------------------


def sides(folder: Path, prompt: list[int], new_tokens: int, which: tuple[str, ...]) -> dict[str, dict]:
    """For each side: `greedy()` -> the new tokens, and `batch()` -> tokens sampled in a batch."""
    from models.checkpoint import load_model
    from models.engine import Engine
    from models.tokenizer import Tokenizer

    out: dict[str, dict] = {}
    ids = torch.tensor([prompt])
    if "hf" in which:
        from transformers import AutoModelForCausalLM, GenerationConfig
        from transformers.utils import logging

        logging.set_verbosity_error()  # not the max_length-vs-max_new_tokens notice on every call
        hf = AutoModelForCausalLM.from_pretrained(folder / "hf").eval()
        # The export's generation_config.json stops at <|assistant_end|>/<|bos|>, and generate()
        # fills an unset eos_token_id from it: a trained model's greedy run would stop early.
        hf.generation_config.eos_token_id = None
        greedy_cfg = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
        batch_cfg = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=True,
            temperature=1.0,
            top_k=50,
            num_return_sequences=BATCH,
            eos_token_id=None,
            pad_token_id=0,
        )

        @torch.inference_mode()
        def hf_greedy() -> list[int]:
            return hf.generate(ids, generation_config=greedy_cfg)[0, len(prompt) :].tolist()

        @torch.inference_mode()
        def hf_batch() -> int:
            return hf.generate(ids, generation_config=batch_cfg).size(0) * new_tokens

        out["hf"] = {"model": hf, "greedy": hf_greedy, "batch": hf_batch}
    if "ours" in which or "nocache" in which:
        model, ckpt = load_model(str(folder / "run"))
        engine = Engine(model, Tokenizer.load(ckpt.config["tokenizer"]))

        def ours_greedy() -> list[int]:
            return engine.generate(prompt, 1, max_new_tokens=new_tokens, temperature=0, stop=[])[0].tokens

        def ours_batch() -> int:
            samples = engine.generate(
                prompt, BATCH, max_new_tokens=new_tokens, temperature=1.0, top_k=50, stop=[], seed=0
            )
            return sum(len(s.tokens) for s in samples)

        @torch.inference_mode()
        def nocache_greedy() -> list[int]:
            seq = list(prompt)  # the whole sequence through the model again for every token
            stacked = model.stacked_weights()  # the same kernels as the engine's steps
            for _ in range(new_tokens):
                seq.append(int(model(torch.tensor([seq]), stacked=stacked)[0, -1].argmax()))
            return seq[len(prompt) :]

        out["ours"] = {"model": model, "greedy": ours_greedy, "batch": ours_batch}
        out["nocache"] = {"model": model, "greedy": nocache_greedy}
    return {k: v for k, v in out.items() if k in which}


def memory(side: str, folder: Path, prompt: list[int], new_tokens: int) -> dict:
    """In a fresh process: RSS after loading and one forward pass, and peak RSS after one
    greedy generation (ru_maxrss, this process only)."""
    torch.set_num_threads(1)
    run = sides(folder, prompt, new_tokens, (side,))[side]
    with torch.inference_mode():  # kernel set-up is not generation's memory
        run["model"](torch.tensor([prompt]))
    before = rss_mb()
    run["greedy"]()
    return {"rss_before_mb": before, "peak_mb": peak_mb()}


def timings(folder: Path, prompt: list[int], new_tokens: int, repeats: int) -> dict[str, dict]:
    """Every side in this process, interleaved round by round, so that each round's sides see
    the same load on a shared machine. Per side: the best round's seconds, and every round's
    seconds (for per-round ratios)."""
    torch.set_num_threads(1)
    runs = sides(folder, prompt, new_tokens, ("ours", "nocache", "hf"))
    result = {name: {"tokens": run["greedy"](), "rounds": [], "batch_rounds": []} for name, run in runs.items()}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            tokens = run["greedy"]()
            result[name]["rounds"].append(time.perf_counter() - started)
            assert tokens == result[name]["tokens"], f"{name}: greedy decoding is not deterministic"
            if "batch" in run:
                started = time.perf_counter()
                result[name]["batch_tokens"] = run["batch"]()
                result[name]["batch_rounds"].append(time.perf_counter() - started)
    return result


def prepare(folder: Path, checkpoint_uri: str | None) -> list[int]:
    """Write a checkpoint (unless given one), export it, and return the prompt's ids."""
    from models import checkpoint
    from models.export import export
    from models.gpt import GPT, GPTConfig
    from models.tokenizer import Tokenizer, train

    truth = json.loads((SHARED / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)]
    if checkpoint_uri is None:
        tok = train(texts[:150], 4096)  # the tiny preset's vocabulary size
        tok.save(str(folder / "tokenizer"))
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=512))
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.5)  # the zero-initialised head would make every logit equal
        checkpoint_uri = checkpoint.save(
            str(folder / "run"),
            0,
            model=model.state_dict(),
            config={"model": dataclasses.asdict(model.config), "tokenizer": str(folder / "tokenizer")},
        )
    else:
        ckpt = checkpoint.load(checkpoint_uri, training_state=False)
        config = {**ckpt.config, "model": {**ckpt.config["model"], "seq_len": 512}}  # room for 256 new tokens
        checkpoint.save(str(folder / "run"), ckpt.step, model=ckpt.model, config=config)
        tok = Tokenizer.load(ckpt.config["tokenizer"])
    export(str(folder / "run"), str(folder / "hf"))
    return [tok.bos_id, *tok.encode(texts[-1])[:32]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="a trained checkpoint to use instead of random weights")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: one side's memory, as JSON
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--prompt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(memory(args.side, Path(args.folder), json.loads(args.prompt), args.new_tokens)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompt = prepare(folder, args.checkpoint)
        results = timings(folder, prompt, args.new_tokens, args.repeats)
        for side in results:
            cmd = [
                sys.executable,
                __file__,
                "--side",
                side,
                "--folder",
                tmp,
                "--prompt",
                json.dumps(prompt),
                "--new-tokens",
                str(args.new_tokens),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[side].update(json.loads(out.strip().splitlines()[-1]))

    n = args.new_tokens
    same = results["ours"]["tokens"] == results["nocache"]["tokens"] == results["hf"]["tokens"]
    rate = {side: n / min(r["rounds"]) for side, r in results.items()}

    def ratio(a: str, b: str, key: str = "rounds") -> tuple[float, float]:
        """(best-of-rounds ratio, median of the per-round ratios) of a's speed over b's."""
        per_round = sorted(tb / ta for ta, tb in zip(results[a][key], results[b][key]))
        return min(results[b][key]) / min(results[a][key]), per_round[len(per_round) // 2]

    print(
        f"greedy, {len(prompt)}-token prompt + {n} new tokens, 1 thread, {args.repeats} interleaved rounds"
        f" ({'random weights' if args.checkpoint is None else args.checkpoint}), load average {os.getloadavg()[0]:.1f}:"
    )
    print(f"  {'':10} {'tokens/s':>9} {'peak RSS MB':>12} {'growth while generating MB':>27}")
    for side, label in (("ours", "ours"), ("nocache", "no cache"), ("hf", "HF")):
        r = results[side]
        print(f"  {label:10} {rate[side]:9.0f} {r['peak_mb']:12.0f} {r['peak_mb'] - r['rss_before_mb']:27.1f}")
    for (a, b), label, target in (
        (("ours", "nocache"), "ours / no cache", 5.0),
        (("ours", "hf"), "ours / HF generate", 1.0),
    ):
        best, median = ratio(a, b)
        print(f"  {label}: {best:.2f}x best-of-rounds, {median:.2f}x median per round   (target >= {target}x)")
    print(f"  identical tokens on all three: {same}")
    batch = {side: results[side]["batch_tokens"] / min(results[side]["batch_rounds"]) for side in ("ours", "hf")}
    best, median = ratio("ours", "hf", "batch_rounds")
    print(
        f"{BATCH} samples of the prompt (temperature 1, top-k 50): ours {batch['ours']:.0f} tokens/s, "
        f"HF {batch['hf']:.0f} tokens/s: {best:.2f}x best, {median:.2f}x median per round"
    )
    if not same:
        sys.exit("the three greedy sequences differ")


if __name__ == "__main__":
    main()
