"""A tiny lake for the RL tests, built with the project's own code in a few seconds: a
tokenizer, a small GPT fine-tuned briefly on sums solved with the calculator in the SFT
format (so its samples are right some of the time and wrong the rest: RL has something to
learn from), and a JSONL file of such problems with their answers."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import torch

from models import checkpoint, lake
from models.chat import render_conversation
from models.gpt import GPT, GPTConfig
from models.tokenizer import Tokenizer, train

MODEL = GPTConfig(vocab_size=320, seq_len=64, n_layer=2, n_head=2, n_kv_head=1, n_embd=48)


def sum_problem(rng: random.Random) -> tuple[str, int, int]:
    a, b = rng.randint(0, 30), rng.randint(0, 30)
    return f"What is {a} plus {b}?", a, b


def conversation(question: str, a: int, b: int) -> list[dict]:
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "calculator", "arguments": f"{a} + {b}"}]},
        {"role": "tool", "content": str(a + b)},
        {"role": "assistant", "content": f"{a} + {b} = {a + b}.\nAnswer: {a + b}"},
    ]


def tokenizer() -> Tokenizer:
    rng = random.Random(0)
    texts = []
    for _ in range(300):
        question, a, b = sum_problem(rng)
        texts += [question, f"{a} + {b} = {a + b}.\nAnswer: {a + b}"]
    return train(texts, MODEL.vocab_size)


def fine_tune(tok: Tokenizer, steps: int, seed: int = 0) -> GPT:
    """A few hundred AdamW steps of the SFT loss on fresh sums: enough to learn the format,
    not enough to always copy the numbers right."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = GPT(MODEL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = [render_conversation(tok, conversation(*sum_problem(rng))) for _ in range(16)]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        targets = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, (r, mask) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            targets[i, : len(r) - 1] = torch.tensor([t if m else -1 for t, m in zip(r[1:], mask[1:])])
        loss = model(ids, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def problems_file(path: Path, count: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            question, a, b = sum_problem(rng)
            f.write(json.dumps({"id": f"sum-{i:04d}", "question": question, "answer": a + b}) + "\n")
    return path


def build(root: str, steps: int = 200) -> dict[str, str]:
    """Write the tiny lake under `root`; returns the URIs the tests use."""
    tok = tokenizer()
    tok_uri = lake.join(root, "tokenizers", "sums")
    tok.save(tok_uri)
    lake.commit(tok_uri, [], kind="tokenizer")
    model = fine_tune(tok, steps)
    sft = checkpoint.save(
        lake.join(root, "checkpoints", "sft"),
        steps,
        model=model.state_dict(),
        config={"model": asdict(MODEL), "tokenizer": tok_uri},
    )
    problems = problems_file(Path(root) / "sums.jsonl", 48)
    return {"root": root, "tokenizer": tok_uri, "sft": sft, "problems": str(problems)}
