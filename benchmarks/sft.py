"""SFT benchmark: rendering with loss masks against transformers' chat template, and
best-fit packing against padding.

    python benchmarks/sft.py [--conversations 3000] [--repeats 3]

Rendering. The anchor is how TRL trains on assistant tokens only (`assistant_only_loss`):
`apply_chat_template(..., return_assistant_tokens_mask=True)` with a template whose
assistant spans sit in `{% generation %}` blocks, on the HF tokenizer models/export.py
converts from ours. The template here writes our format (turns, calculator calls, their
results), so both sides must give the very same ids and masks (checked, conversation by
conversation); printed are conversations per second of each, the ratio, and each side's
peak memory (a fresh process per side: peak RSS with the tokenizer loaded and everything
rendered). The conversations are the generated ones that need no search index: math word
problems and arithmetic through the calculator, identity, refusals and look-alikes.

Packing. The same rendered conversations into rows of the tiny preset's context (257
tokens): best fit (models/sft_data.py, as nanochat) against one conversation per row padded
to the context (a fixed-length collator), and against padding each batch of 16 to its longest
conversation (TRL's default collator without packing). Printed: rows and the share of
computed tokens that are padding.
"""

from __future__ import annotations

import argparse
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

SEQ_LEN = 256
BATCH = 16
SOURCES = ("math", "arithmetic", "identity", "harmful", "benign", "private")

# Our format as a chat template, assistant spans in generation blocks (what TRL needs).
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user_start|>{{ m['content'] }}<|user_end|>"
    "{% elif m['role'] == 'assistant' %}"
    "{% if messages[loop.index0 - 1]['role'] == 'user' %}<|assistant_start|>{% endif %}"
    "{% generation %}{{ m['content'] }}"
    "{% for c in m['tool_calls'] %}<|calc_start|>{{ c['arguments'] }}<|calc_end|>{% endfor %}"
    "{% if not m['tool_calls'] %}<|assistant_end|>{% endif %}{% endgeneration %}"
    "{% elif m['role'] == 'tool' %}<|output_start|>{{ m['content'] }}<|output_end|>{% endif %}"
    "{% endfor %}"
)


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def tokenizer(folder: Path):
    """Our tokenizer, trained on the sample crawl's pages (deterministic), saved in `folder`."""
    from models.tokenizer import Tokenizer, train
    from tasks.config import SampleCrawlConfig
    from tasks.sample_crawl.plan import plan

    if (folder / "tokenizer.model").exists():
        return Tokenizer.load(str(folder))
    pages, _ = plan(SampleCrawlConfig())
    texts = [
        "\n".join(b.text for b in p.blocks)
        for p in pages
        if p.kind in ("encyclopedia_person", "math_worksheet", "stdlib_docs")
    ]
    tok = train(texts, 4096)
    tok.save(str(folder))
    return tok


def conversations(n: int) -> list[list[dict]]:
    from tasks.sft import generate as G

    per = {
        "math": n * 2 // 5,
        "arithmetic": n // 5,
        "identity": n // 10,
        "harmful": n // 10,
        "benign": n // 10,
        "private": n // 10,
    }
    ctx = G.Context(seed=0, test_fraction=0.2, entities={}, counts=per)
    out = [r["messages"] for source in SOURCES for r in G.generate(source, ctx, 0.0)["train"]]
    return out[:n]


def hf_tokenizer(folder: Path, tok):
    from transformers import PreTrainedTokenizerFast

    from models.export import tokenizer_config, tokenizer_json

    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(tok)))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**tokenizer_config(tok, SEQ_LEN), "chat_template": TEMPLATE})
    )
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def render_ours(tok, convs):
    from models.chat import render_conversation

    return [render_conversation(tok, c) for c in convs]


def render_hf(hf, convs):
    out = []
    for c in convs:
        r = hf.apply_chat_template(c, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        out.append((list(r["input_ids"]), list(r["assistant_masks"])))
    return out


def side(name: str, folder: Path, n: int) -> None:
    """Run one side in this (fresh) process and print its peak memory as JSON."""
    from models.tokenizer import Tokenizer

    tok = Tokenizer.load(str(folder))
    convs = conversations(n)
    if name == "ours":
        render_ours(tok, convs)
    else:
        render_hf(hf_tokenizer(folder, tok), convs)
    print(json.dumps({"peak_mb": peak_mb()}))


def padding_share(lengths: list[int], rows: int, row_len: int) -> float:
    return 1 - sum(lengths) / (rows * row_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, Path(args.folder), args.conversations)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tok = tokenizer(folder)
        convs = conversations(args.conversations)
        hf = hf_tokenizer(folder, tok)
        ours, theirs = render_ours(tok, convs), render_hf(hf, convs)  # warm-up, and the check
        same = sum(a == b for a, b in zip(ours, theirs))
        if same != len(convs):
            bad = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            raise SystemExit(f"ids or masks differ on conversation {bad}: {convs[bad]}")
        best = {"ours": float("inf"), "hf": float("inf")}
        for _ in range(args.repeats):  # interleaved rounds: both sides see the same load
            for name, fn in (("ours", lambda: render_ours(tok, convs)), ("hf", lambda: render_hf(hf, convs))):
                started = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - started)
        memory = {
            name: json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--side",
                        name,
                        "--folder",
                        tmp,
                        "--conversations",
                        str(args.conversations),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )["peak_mb"]
            for name in best
        }

    from models.sft_data import pack

    n = len(convs)
    trained = sum(sum(m) for _, m in ours)
    print(
        f"{n} conversations ({', '.join(SOURCES)}), {sum(len(i) for i, _ in ours):,} tokens, {trained:,} trained; "
        f"ids and masks identical on all {same}"
    )
    print(f"{'render + mask':<28}{'conversations/s':>16}{'peak MB':>10}")
    for name, label in (("ours", "ours (models/chat.py)"), ("hf", "HF chat template + masks")):
        print(f"{label:<28}{n / best[name]:>16,.0f}{memory[name]:>10,.0f}")
    print(f"ratio ours/HF: {best['hf'] / best['ours']:.2f}x faster")

    lengths = [len(i) for i, _ in ours if len(i) <= SEQ_LEN + 1]
    started = time.perf_counter()
    rows = list(pack(ours, SEQ_LEN, tok.pad_id))
    pack_s = time.perf_counter() - started
    batches = [lengths[i : i + BATCH] for i in range(0, len(lengths), BATCH)]
    dynamic_tokens = sum(len(b) * max(b) for b in batches)
    print(f"\npacking into rows of {SEQ_LEN + 1} tokens   rows   padding")
    print(
        f"{'best fit (ours)':<34}{len(rows):>5}{padding_share(lengths, len(rows), SEQ_LEN + 1):>9.1%}   ({pack_s:.2f} s)"
    )
    print(f"{'one conversation per row':<34}{len(lengths):>5}{padding_share(lengths, len(lengths), SEQ_LEN + 1):>9.1%}")
    print(f"{'batch of 16 padded to its longest':<34}{len(lengths):>5}{1 - sum(lengths) / dynamic_tokens:>9.1%}")


if __name__ == "__main__":
    main()
