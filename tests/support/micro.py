"""A pipeline config small enough to run every stage in a test: the tiny preset with a
one-layer model, a few steps of each training stage and a handful of conversations."""

from __future__ import annotations

from typing import Any

from tasks.config import PipelineConfig, load_config

MICRO = {
    "curate.dedup_enabled": False,
    "curate.extract.extractor": "resiliparse",
    "sample_crawl.pages": 60,
    "tokenize.val_fraction": 0.3,  # a few dozen documents: every crawl keeps some for validation
    "sample_crawl.files": 2,
    "tokenizer.vocab_size": 600,
    "pretrain.model": {"seq_len": 128, "n_layer": 1, "n_head": 2, "n_kv_head": 2, "n_embd": 32},
    "pretrain.train": {
        "steps": 2,
        "batch_tokens": 256,
        "device_batch": 2,
        "warmup_steps": 1,
        "eval_every": 2,
        "eval_tokens": 256,
        "checkpoint_every": 2,
        "sample_prompts": ["The"],
        "sample_tokens": 4,
    },
    "sft.counts": {
        "facts_search": 1,
        "unknown": 6,
        "math": 6,
        "math_test": 3,
        "arithmetic": 4,
        "arithmetic_test": 2,
        "private": 3,
        "harmful": 3,
        "benign": 3,
        "refusal_test": 2,
        "identity": 2,
        "echo": 4,
        "doc_questions": 1,
        "doc_unknown": 6,
    },
    "sft.probe_samples": 1,
    "sft.probe_tokens": 4,
    "sft.train": {
        "steps": 2,
        "batch_tokens": 256,
        "device_batch": 2,
        "warmup_steps": 1,
        "eval_every": 2,
        "eval_tokens": 256,
        "checkpoint_every": 2,
        "sample_prompts": ["Hi"],
        "sample_tokens": 4,
    },
    "evaluate.limits": {
        "math": 2,
        "fact": 2,
        "unknown": 2,
        "harmful": 1,
        "private": 1,
        "benign": 1,
        "doc": 2,
        "doc_unknown": 2,
    },
    "evaluate.max_new_tokens": 12,
    "rl.iterations": 1,
    "rl.problems": {"difficulty": [1], "train": 4, "eval": 2},
    "rl.prompts": 2,
    "rl.samples": 2,
    "rl.chunk": 2,
    "rl.max_new_tokens": 16,
    "rl.eval_samples": 1,
    "rl.eval_chunk": 2,
}


def micro_config(lake_root: str, **overrides: Any) -> PipelineConfig:
    return load_config("tiny", {**MICRO, "lake.root": lake_root, **overrides})
