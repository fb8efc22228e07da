"""lm-eval benchmark: our LM (models/harness.py) against lm-eval's `hf` backend on the export.

    python benchmarks/harness.py [--items 200] [--batch-size 16] [--repeats 2]

One multiple-choice task over real text (the extraction benchmark's articles: a passage's
first words, then its next five words or five words from another article; 4 choices),
scored by lm-eval's `simple_evaluate` two ways:
- ours: models.harness.EngineLM on the checkpoint (batched forward passes, longest first);
- hf:   lm-eval's HFLM on the folder models/export.py wrote from the same checkpoint
        (Qwen3ForCausalLM, float32, <|bos|> first), its own batching at the same batch size.
The accuracies must be equal (checked). The model is the tiny preset's size (4 layers, 128
wide, context 256) with random weights: speed does not depend on training. One CPU thread;
the sides alternate round by round (the machine is shared), best of `--repeats` counts. Peak
RSS per side comes from a fresh process that scores the task once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ARTICLES = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", "/work/shared/data")) / "extraction-benchmark" / "ground-truth.json"


def prepare(folder: Path, items: int) -> None:
    """A tokenizer, a random checkpoint of the tiny preset's shape, its export, and the task."""
    import torch

    from models import checkpoint
    from models.export import export
    from models.gpt import GPT, GPTConfig
    from models.tokenizer import train

    texts = [a["articleBody"] for a in json.loads(ARTICLES.read_text()).values()]
    tok = train(texts[:120], 4096)
    tok.save(str(folder / "tok"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=256, n_layer=4, n_head=4, n_kv_head=4, n_embd=128))
    checkpoint.save(str(folder / "run"), 1, model=model.state_dict(), config={"model": dataclasses.asdict(model.config), "tokenizer": str(folder / "tok")})
    export(str(folder / "run"), str(folder / "hf"))
    r = random.Random(0)
    words = [t.split() for t in texts if len(t.split()) > 80]
    docs = []
    for _ in range(items):
        w = r.choice(words)
        start = r.randrange(0, len(w) - 70)
        choices = [" ".join(w[start + 60 : start + 65])] + [" ".join(r.choice(words)[i : i + 5]) for i in r.sample(range(60), 3)]
        gold = r.randrange(4)
        choices[0], choices[gold] = choices[gold], choices[0]
        docs.append({"q": " ".join(w[start : start + 60]), "choices": choices, "gold": gold})
    (folder / "items.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "next_words.yaml").write_text(
        f"task: next_words\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: {folder / 'items.jsonl'}}}}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: gold\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\n"
    )


def score(side: str, folder: Path, batch_size: int) -> tuple[float, float]:
    """(seconds, accuracy) of one scoring of the task."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import models.harness  # noqa: F401  registers "crawl2chat"

    model, args = {
        "ours": ("crawl2chat", f"checkpoint={folder / 'run'},batch_size={batch_size}"),
        "hf": ("hf", f"pretrained={folder / 'hf'},dtype=float32,add_bos_token=True,batch_size={batch_size}"),
    }[side]
    started = time.perf_counter()
    out = lm_eval.simple_evaluate(model=model, model_args=args, tasks=["next_words"], task_manager=TaskManager(include_path=str(folder)),
                                  device="cpu", log_samples=False, verbosity="ERROR")
    return time.perf_counter() - started, out["results"]["next_words"]["acc,none"]


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--side", help=argparse.SUPPRESS)  # a fresh process's single scoring, for its peak RSS
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.side:
        seconds, acc = score(args.side, Path(args.folder), args.batch_size)
        print(json.dumps({"peak_mb": peak_mb(), "acc": acc}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, args.items)
        best: dict[str, float] = {}
        accuracy: dict[str, float] = {}
        for _ in range(args.repeats):
            for side in ("ours", "hf"):
                seconds, accuracy[side] = score(side, folder, args.batch_size)
                best[side] = min(best.get(side, float("inf")), seconds)
        assert accuracy["ours"] == accuracy["hf"], f"the two sides disagree: {accuracy}"
        memory = {side: json.loads(subprocess.run([sys.executable, __file__, "--side", side, "--folder", tmp, "--batch-size", str(args.batch_size)],
                                                  capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])["peak_mb"]
                  for side in ("ours", "hf")}
    requests = 4 * args.items
    print(f"lm-eval, {args.items} items x 4 choices ({requests} loglikelihood requests), batch {args.batch_size}, 1 thread; "
          f"accuracy {accuracy['ours']:.4f} both sides")
    print(f"  {'':6} {'seconds':>8} {'requests/s':>11} {'peak RSS MB':>12}")
    for side in ("ours", "hf"):
        print(f"  {side:6} {best[side]:8.2f} {requests / best[side]:11.1f} {memory[side]:12.0f}")
    print(f"  ours / hf: {best['hf'] / best['ours']:.2f}x the throughput")


if __name__ == "__main__":
    main()
