"""Serving benchmark: tokens/s and time to first token with 1, 4 and 16 concurrent clients.

    python benchmarks/serve.py [--new-tokens 128] [--requests 2] [--clients 1,4,16] [--checkpoint URI]

Each client sends `--requests` requests one after another, each a different prompt (16 to 48
tokens of a held-out article) asking for exactly `--new-tokens` tokens (temperature 1, top-k
50, stop tokens ignored), all clients starting together. Three sides, under the same load:
- ours:      models.batcher.Batcher in-process: every client's rows decode in one forward per
             step (continuous batching), each client reading its tokens from a queue;
- ours HTTP: `crawl2chat serve`'s app (uvicorn on loopback, in this process) read by the
             official openai client, streaming: what a user of the server sees, HTTP and SSE
             parsing included (client threads share the CPU with the server);
- HF:        transformers' Qwen3ForCausalLM.generate on the folder models/export.py wrote from
             the same checkpoint, one call per request from each client's thread (no lock:
             concurrent calls run side by side as far as the GIL and the cores let them).
Printed per level: aggregate tokens/s (all new tokens / wall time), time to first token
(median and worst, ms), ours over HF, and the aggregate at the most clients over the
single-client rate (target >= 4x on CPU). Each side runs each level in a fresh process (its
peak RSS is its own), the sides of a level one after another so that they see about the same
load on a shared machine; with --rounds N the best of N rounds counts. One thread for torch
(OMP_NUM_THREADS=1).

The model is the tiny preset's size (4 layers, 4 heads, 128 wide, 4,096 tokens; 1.9M
parameters) with a 512-token context, random weights unless --checkpoint names a trained one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

from benchmarks.generate import peak_mb  # noqa: E402

SHARED = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", REPO.parent / "shared" / "data"))


def prepare(folder: Path, checkpoint_uri: str | None) -> list[list[int]]:
    """Write a checkpoint (unless given one), export it, and return 16 prompts."""
    from models import checkpoint
    from models.export import export
    from models.gpt import GPT, GPTConfig
    from models.tokenizer import Tokenizer, train

    truth = json.loads((SHARED / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)]
    if checkpoint_uri is None:
        tok = train(texts[:150], 4096)
        tok.save(str(folder / "tokenizer"))
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=512))
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.5)  # the zero-initialised head would make every logit equal
        checkpoint.save(
            str(folder / "run"),
            0,
            model=model.state_dict(),
            config={"model": dataclasses.asdict(model.config), "tokenizer": str(folder / "tokenizer")},
        )
    else:
        ckpt = checkpoint.load(checkpoint_uri, training_state=False)
        config = {**ckpt.config, "model": {**ckpt.config["model"], "seq_len": 512}}
        checkpoint.save(str(folder / "run"), ckpt.step, model=ckpt.model, config=config)
        tok = Tokenizer.load(ckpt.config["tokenizer"])
    export(str(folder / "run"), str(folder / "hf"))
    return [[tok.bos_id, *tok.encode(texts[150 + i])[: 16 + 2 * i]] for i in range(16)]


# -- one request on each side: returns (seconds to the first token, tokens) -----------------------


def ours_side(folder: Path, new_tokens: int):
    from models.batcher import Batcher, Sampling
    from models.engine import Engine

    engine = Engine.from_checkpoint(str(folder / "run"))
    batcher = Batcher(engine, capacity=32)

    def request(prompt: list[int], seed: int) -> tuple[float, int]:
        started, events = time.perf_counter(), queue.Queue()
        batcher.submit(prompt, Sampling(new_tokens, 1.0, 50, None, seed, stop=frozenset()), events.put)
        first, tokens = None, 0
        while (item := events.get()) is not None:
            assert not isinstance(item, BaseException), item
            first = first or time.perf_counter() - started
            tokens += len(item)
        return first, tokens

    return request, batcher.close


def http_side(folder: Path, new_tokens: int):
    import uvicorn
    from openai import OpenAI

    from flows.serve import create_app
    from models.engine import Engine
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Engine.from_checkpoint(str(folder / "run")), "bench"),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    local = threading.local()

    def request(prompt: list[int], seed: int) -> tuple[float, int]:
        if not hasattr(local, "client"):
            local.client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
        started, first, tokens = time.perf_counter(), None, 0
        stream = local.client.completions.create(
            model="bench",
            prompt=[prompt],
            max_tokens=new_tokens,
            temperature=1.0,
            seed=seed,
            stream=True,
            extra_body={"top_k": 50, "ignore_eos": True},
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text and first is None:
                first = time.perf_counter() - started
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return first, tokens

    def close() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return request, close


def hf_side(folder: Path, new_tokens: int):
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.utils import logging

    logging.set_verbosity_error()
    hf = AutoModelForCausalLM.from_pretrained(folder / "hf").eval()
    hf.generation_config.eos_token_id = None
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=50,
        eos_token_id=None,
        pad_token_id=0,
    )

    class FirstToken:
        """A generate() streamer that notes when the first new token arrives (the first
        `put` is the prompt)."""

        def __init__(self) -> None:
            self.puts, self.at = 0, None

        def put(self, value) -> None:
            self.puts += 1
            if self.puts == 2:
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    @torch.inference_mode()
    def request(prompt: list[int], seed: int) -> tuple[float, int]:
        streamer, started = FirstToken(), time.perf_counter()
        out = hf.generate(torch.tensor([prompt]), generation_config=config, streamer=streamer)
        return streamer.at - started, out.size(1) - len(prompt)

    return request, lambda: None


SIDES = {"ours": ours_side, "ours HTTP": http_side, "HF": hf_side}


def run_side(
    side: str, folder: Path, prompts: list[list[int]], levels: list[int], new_tokens: int, requests: int
) -> dict:
    torch.set_num_threads(1)
    request, close = SIDES[side](folder, new_tokens)
    request(prompts[0], 0)  # warm-up
    out = {}
    for clients in levels:
        ttfts: list[float] = []
        totals: list[int] = []

        def client(c: int, ttfts: list[float] = ttfts, totals: list[int] = totals) -> None:
            for r in range(requests):
                first, tokens = request(prompts[(c + r) % len(prompts)], c * 100 + r)
                ttfts.append(first)
                totals.append(tokens)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        assert all(t == new_tokens for t in totals), f"{side}: a request got {min(totals)} tokens, not {new_tokens}"
        ttfts.sort()
        out[clients] = {
            "tokens_per_s": sum(totals) / wall,
            "ttft_median_ms": 1000 * ttfts[len(ttfts) // 2],
            "ttft_max_ms": 1000 * ttfts[-1],
            "wall_s": wall,
        }
    close()
    out["peak_mb"] = peak_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--checkpoint", help="a trained checkpoint to use instead of random weights")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side, print JSON
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    if args.side:
        prompts = json.loads((Path(args.folder) / "prompts.json").read_text())
        print(json.dumps(run_side(args.side, Path(args.folder), prompts, levels, args.new_tokens, args.requests)))
        return

    sides = args.sides.split(",")
    best: dict[str, dict] = {side: {} for side in sides}
    peak: dict[str, float] = {side: 0.0 for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        prompts = prepare(Path(tmp), args.checkpoint)
        (Path(tmp) / "prompts.json").write_text(json.dumps(prompts))
        for _ in range(args.rounds):
            for clients in levels:
                for side in sides:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--side",
                        side,
                        "--folder",
                        tmp,
                        "--clients",
                        str(clients),
                        "--new-tokens",
                        str(args.new_tokens),
                        "--requests",
                        str(args.requests),
                    ]
                    out = json.loads(
                        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
                        .stdout.strip()
                        .splitlines()[-1]
                    )
                    peak[side] = max(peak[side], out["peak_mb"])
                    m = out[str(clients)]
                    if clients not in best[side] or m["tokens_per_s"] > best[side][clients]["tokens_per_s"]:
                        best[side][clients] = m

    print(
        f"{args.requests} requests per client, {args.new_tokens} new tokens each (temperature 1, top-k 50), 16-48-token prompts, "
        f"1 torch thread, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, best of {args.rounds} round(s) "
        f"({'random weights' if args.checkpoint is None else args.checkpoint}):"
    )
    print(f"  {'clients':>7} {'side':>10} {'tokens/s':>9} {'TTFT median ms':>15} {'TTFT max ms':>12}")
    for clients in levels:
        for side in sides:
            m = best[side][clients]
            print(
                f"  {clients:7d} {side:>10} {m['tokens_per_s']:9.0f} {m['ttft_median_ms']:15.1f} {m['ttft_max_ms']:12.1f}"
            )
        if "ours" in best and "HF" in best:
            print(
                f"  {'':7} ours / HF: {best['ours'][clients]['tokens_per_s'] / best['HF'][clients]['tokens_per_s']:.2f}x tokens/s"
            )
    most, one = max(levels), min(levels)
    for side in sides:
        print(
            f"  {side}: {most} clients / {one}: {best[side][most]['tokens_per_s'] / best[side][one]['tokens_per_s']:.2f}x aggregate"
            f"{'  (target >= 4x)' if side == 'ours' else ''}; peak RSS {peak[side]:.0f} MB"
        )


if __name__ == "__main__":
    main()
