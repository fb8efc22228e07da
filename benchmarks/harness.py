"""lm-eval benchmark: our LM (models/harness.py) against lm-eval's `hf` backend on the export.

    python benchmarks/harness.py [--items 200] [--batch-size 16] [--repeats 2]

One multiple-choice task over real text (the extraction benchmark's articles: a passage's
first words, then its next five words or five words from another article; 4 choices),
its loglikelihood requests built by lm-eval, then scored two ways:
- ours: models.harness.EngineLM on the checkpoint (batched forward passes, longest first);
- hf:   lm-eval's HFLM on the folder models/export.py wrote from the same checkpoint
        (Qwen3ForCausalLM, float32, <|bos|> first), its own batching at the same batch size.
Loglikelihoods must agree to 1e-3 and the accuracies exactly (checked). The model is the
tiny preset's size (4 layers, 128 wide, context 256) with random weights: speed does not
depend on training. One CPU thread; the sides alternate round by round, best of `--repeats`
counts, in CPU seconds as well as wall seconds (the machine is shared: CPU time is the
steadier figure). Peak RSS per side comes from a fresh process that scores the task once.
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
ARTICLES = (
    Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", "/work/shared/data")) / "extraction-benchmark" / "ground-truth.json"
)


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
    checkpoint.save(
        str(folder / "run"),
        1,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(model.config), "tokenizer": str(folder / "tok")},
    )
    export(str(folder / "run"), str(folder / "hf"))
    r = random.Random(0)
    words = [t.split() for t in texts if len(t.split()) > 80]
    docs = []
    for _ in range(items):
        w = r.choice(words)
        start = r.randrange(0, len(w) - 70)
        choices = [" ".join(w[start + 60 : start + 65])] + [
            " ".join(r.choice(words)[i : i + 5]) for i in r.sample(range(60), 3)
        ]
        gold = r.randrange(4)
        choices[0], choices[gold] = choices[gold], choices[0]
        docs.append({"q": " ".join(w[start : start + 60]), "choices": choices, "gold": gold})
    (folder / "items.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "next_words.yaml").write_text(
        f"task: next_words\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: {folder / 'items.jsonl'}}}}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: gold\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\n"
    )


def requests(folder: Path) -> list:
    """The task's loglikelihood requests, as lm-eval builds them (4 per item, in item order)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict(["next_words"], TaskManager(include_path=str(folder)))["next_words"]
    task.build_all_requests(rank=0, world_size=1)
    return sorted(task.instances, key=lambda i: (i.doc_id, i.idx))


def model(side: str, folder: Path, batch_size: int):
    if side == "ours":
        from models.harness import EngineLM

        return EngineLM(checkpoint=str(folder / "run"), batch_size=batch_size)
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(folder / "hf"), dtype="float32", add_bos_token=True, batch_size=batch_size, device="cpu")


def score(lm, reqs: list) -> tuple[float, float, list[float]]:
    """(wall seconds, CPU seconds, loglikelihoods) of one pass over the requests."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = lm.loglikelihood(reqs, disable_tqdm=True)
    return time.perf_counter() - wall, time.process_time() - cpu, [ll for ll, _ in out]


def accuracy(reqs: list, lls: list[float]) -> float:
    by_doc: dict[int, list[float]] = {}
    for r, ll in zip(reqs, lls):
        by_doc.setdefault(r.doc_id, []).append(ll)
    return sum(max(range(4), key=v.__getitem__) == reqs[4 * d].doc["gold"] for d, v in by_doc.items()) / len(by_doc)


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
        folder = Path(args.folder)
        score(model(args.side, folder, args.batch_size), requests(folder))
        print(json.dumps({"peak_mb": peak_mb()}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, args.items)
        reqs = requests(folder)
        lms = {side: model(side, folder, args.batch_size) for side in ("ours", "hf")}
        best: dict[str, tuple[float, float]] = {}
        lls: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for side, lm in lms.items():
                wall, cpu, lls[side] = score(lm, reqs)
                best[side] = min(best.get(side, (float("inf"), float("inf"))), (wall, cpu))
        worst = max(abs(a - b) for a, b in zip(lls["ours"], lls["hf"]))
        assert worst < 1e-3, f"the sides disagree by {worst}"
        acc = {side: accuracy(reqs, v) for side, v in lls.items()}
        assert acc["ours"] == acc["hf"], acc
        memory = {
            side: json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--side", side, "--folder", tmp, "--batch-size", str(args.batch_size)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )["peak_mb"]
            for side in ("ours", "hf")
        }
    n = len(reqs)
    print(
        f"lm-eval loglikelihood, {args.items} items x 4 choices ({n} requests), batch {args.batch_size}, 1 thread; "
        f"accuracy {acc['ours']:.4f} both sides, loglikelihoods within {worst:.1e}"
    )
    print(f"  {'':6} {'wall s':>8} {'CPU s':>8} {'requests/CPU-s':>15} {'peak RSS MB':>12}")
    for side in ("ours", "hf"):
        wall, cpu = best[side]
        print(f"  {side:6} {wall:8.2f} {cpu:8.2f} {n / cpu:15.1f} {memory[side]:12.0f}")
    print(f"  ours / hf: {best['hf'][1] / best['ours'][1]:.2f}x the throughput (CPU time)")


if __name__ == "__main__":
    main()
