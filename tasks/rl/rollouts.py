"""Rollouts: a group of samples per prompt from one policy version, scored, as a shard.

`rollout_chunk` is one Prefect task per chunk of prompts. It takes the policy by its
versioned URI (`checkpoints/{run}/step-N` plus the weights' SHA-256), loads it once per
worker process (`policy`: a module-level cache, so the mapped tasks of an iteration on
threads share one model and a Dask worker loads it once) on the worker's GPU in bf16 when it
has one (models/device.py; `device`/`dtype` in the config override), sets its own torch
thread count, samples G solutions per prompt with the KV-cache engine, all prompts of the
chunk in one batch (`Engine.generate_batch`: chunk x G cache rows decoded per step; the tools
on: calculator results, code output and search passages are forced into the stream with
mask 0; `Sampling.tool` can ask for one tool, the calculator or the code tool), scores
them (reward.py) and writes one shard of `rollouts/{run}/iter-N`.

Determinism: sample i of prompt p at iteration t is drawn from its own generator seeded by
(seed, t, p, i) (models/engine.py: `sample_seed`), so it is the same on threads, on a Dask
worker, alone or in a batch, and in a retried task. The task's cache key is the policy
version, the problems' identity, the chunk's prompt indices and the sampling settings: a
retried or resumed iteration finds its finished chunks cached (results persisted in the
lake) and redoes only the others.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa
import torch

from models import lake
from models.chat import show_mask
from models.engine import Engine, Request, Sample, sample_seed
from models.hashing import seed63
from tasks.evaluate import reply_of
from tasks.rl import CODE, RLConfig
from tasks.rl.problems import prompt_tokens
from tasks.rl.reward import score, shape_lengths
from tasks.runtime import PlacedConfig, lake_task

SCHEMA = pa.schema(
    [
        ("iteration", pa.int32()),
        ("prompt_id", pa.string()),
        ("sample", pa.int32()),  # -1: the greedy sample of an evaluation
        ("prompt", pa.string()),
        ("answer", pa.int64()),
        ("holdout", pa.string()),
        ("template", pa.string()),
        ("prompt_tokens", pa.list_(pa.int32())),
        ("tokens", pa.list_(pa.int32())),  # the completion, tool results included
        ("mask", pa.list_(pa.int8())),  # 1 sampled by the policy, 0 forced by a tool
        ("text", pa.string()),  # the completion with specials by name
        ("reply", pa.string()),  # the model's own last words (what is scored)
        ("strict", pa.string()),  # the answers read from the reply (text: a model may write any number)
        ("lenient", pa.string()),
        ("reward_strict", pa.float32()),
        ("reward_lenient", pa.float32()),
        ("reward", pa.float32()),  # what the update trains on: the config's reward, length-shaped
        ("length", pa.int32()),  # completion tokens
        ("sampled", pa.int32()),  # of them, sampled by the policy
        ("finished", pa.string()),  # stop or length
        ("tool_calls", pa.int32()),
        ("tool_errors", pa.int32()),
    ]
)
EVAL_STREAM = 2**31 - 1  # the "iteration" of evaluation samples: the same draws at every evaluation


class Sampling(PlacedConfig):
    """What a rollout's samples depend on (its cache key holds these, not the whole config;
    the device and dtype too: bf16 samples differ from float32 ones)."""

    seed: int = 0
    samples: int = 8
    max_new_tokens: int = 144
    temperature: float = 1.0
    top_k: int | None = 50
    reward: str = "strict"
    tool: str = "any"  # RLConfig.tool
    length_penalty: float = 0.0
    threads: int = 1
    greedy: bool = False  # add the greedy sample (-1) to each group: evaluation

    @classmethod
    def of(cls, config: RLConfig, evaluation: bool = False) -> Sampling:
        return cls(
            seed=config.seed,
            samples=config.eval_samples if evaluation else config.samples,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_k=config.top_k,
            reward=config.reward,
            tool=config.tool,
            length_penalty=0.0 if evaluation else config.length_penalty,
            threads=config.threads,
            greedy=evaluation,
            device=config.device,
            dtype=config.dtype,
        )


# -- the policy, once per process ------------------------------------------------------------

_POLICIES: OrderedDict[tuple[str, ...], Engine] = OrderedDict()
_POLICY_LOCK = threading.Lock()
KEEP_POLICIES = 2  # an iteration's policy and the previous one; older ones are dropped
LOADS = {"count": 0}  # loads in this process (tests check the cache)


def policy(
    uri: str, version: str, search: str | None = None, tool: str = "any", device: str = "auto", dtype: str = "auto"
) -> Engine:
    """The engine of a policy version, loaded once per process (on the worker's GPU in bf16
    when it has one) and shared by its threads (sampling only reads the weights); `tool` other
    than "any" is the only tool that runs."""
    key = (uri, version, search or "", tool, device, dtype)
    with _POLICY_LOCK:
        engine = _POLICIES.get(key)
        if engine is None:
            tools = {} if tool == "any" else {"tools": (tool,)}
            engine = Engine.from_checkpoint(uri, search=search, device=device, dtype=dtype, **tools)
            LOADS["count"] += 1
            _POLICIES[key] = engine
            while len(_POLICIES) > KEEP_POLICIES:
                _POLICIES.popitem(last=False)
        _POLICIES.move_to_end(key)
        return engine


def prompt_key(prompt_id: str) -> int:
    """A prompt's id as an integer seed key (ids are strings; seeds are integers)."""
    return seed63(prompt_id)


# -- sampling and scoring --------------------------------------------------------------------


def chunk_rows(
    engine: Engine, problems: list[dict[str, Any]], iteration: int, sampling: Sampling
) -> list[dict[str, Any]]:
    """The scored samples of a chunk of prompts: G samples of each (and the greedy one for
    evaluation). All prompts' samples are drawn in one engine batch (the cache holds rows of
    every prompt), so a GPU decodes chunk x G rows per step instead of G."""
    prompts = [prompt_tokens(engine.tokenizer, p["prompt"], sampling.tool) for p in problems]
    options = dict(max_new_tokens=sampling.max_new_tokens, top_k=sampling.top_k)
    stream = EVAL_STREAM if sampling.greedy else iteration
    requests = [
        Request(prompt, sampling.samples, sample_seed(sampling.seed, stream, prompt_key(p["id"])))
        for prompt, p in zip(prompts, problems)
    ]
    drawn = engine.generate_batch(requests, temperature=sampling.temperature, **options)
    greedy = (
        engine.generate_batch([Request(prompt) for prompt in prompts], temperature=0.0, **options)
        if sampling.greedy
        else None
    )
    rows = []
    for k, (problem, prompt) in enumerate(zip(problems, prompts)):
        samples: list[tuple[int, Sample]] = list(enumerate(drawn[k]))
        if greedy is not None:
            samples.insert(0, (-1, greedy[k][0]))
        rows += group_rows(engine, problem, prompt, samples, iteration, sampling)
    return rows


def group_rows(
    engine: Engine,
    problem: dict[str, Any],
    prompt: list[int],
    samples: list[tuple[int, Sample]],
    iteration: int,
    sampling: Sampling,
) -> list[dict[str, Any]]:
    """One prompt's samples (index, sample; -1 the greedy one), scored, as rollout rows."""
    rows = []
    for index, sample in samples:
        reply = reply_of(engine, sample)
        scored = score(reply, problem["answer"])
        scored["strict"], scored["lenient"] = (
            None if v is None else str(v) for v in (scored["strict"], scored["lenient"])
        )
        rows.append(
            {
                "iteration": iteration,
                "prompt_id": problem["id"],
                "sample": index,
                "prompt": problem["prompt"],
                "answer": problem["answer"],
                "holdout": problem.get("holdout", ""),
                "template": problem.get("template", ""),
                "prompt_tokens": prompt,
                "tokens": sample.tokens,
                "mask": sample.mask,
                "text": show_mask(engine.tokenizer, sample.tokens, [0] * len(sample.tokens)),
                "reply": reply,
                **scored,
                "length": len(sample.tokens),
                "sampled": sum(sample.mask),
                "finished": sample.finished,
                "tool_calls": len(sample.tool_calls),
                "tool_errors": sum(not c.ok for c in sample.tool_calls),
            }
        )
    drawn = [r for r in rows if r["sample"] >= 0]
    shaped = shape_lengths(
        [r[f"reward_{sampling.reward}"] for r in drawn], [r["length"] for r in drawn], sampling.length_penalty
    )
    for r, value in zip(drawn, shaped):
        r["reward"] = value
    for r in rows:
        r.setdefault("reward", r[f"reward_{sampling.reward}"])
    return rows


def read_problems(uri: str, indices: list[int]) -> list[dict[str, Any]]:
    """Rows `indices` (positions in the dataset, in that order) of a problems dataset."""
    table = lake.scan(uri).collect()
    return [table.row(i, named=True) for i in indices]


def chunk_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    drawn = [r for r in rows if r["sample"] >= 0]
    return {
        "samples": len(drawn),
        "reward": sum(r["reward"] for r in drawn),
        "reward_strict": sum(r["reward_strict"] for r in drawn),
        "reward_lenient": sum(r["reward_lenient"] for r in drawn),
        "length": sum(r["length"] for r in drawn),
        "tool_calls": sum(r["tool_calls"] for r in drawn),
        "tool_errors": sum(r["tool_errors"] for r in drawn),
        "truncated": sum(r["finished"] == "length" for r in drawn),
    }


@lake_task(inputs=("problems",), code=CODE, task_run_name="rollouts {part} of {out}")
def rollout_chunk(
    policy_uri: str,
    version: str,
    problems: str,
    indices: list[int],
    iteration: int,
    out: str,
    part: str,
    sampling: Sampling,
    search: str | None = None,
) -> dict[str, Any]:
    """Sample and score a group for each problem `indices` of `problems`, with the policy
    `policy_uri` at `version`; write the rows as shard `part` of `out`."""
    torch.set_num_threads(sampling.threads)
    engine = policy(policy_uri, version, search, sampling.tool, sampling.device, sampling.dtype)
    rows = chunk_rows(engine, read_problems(problems, indices), iteration, sampling)
    shard = lake.write_shard(out, part, pa.Table.from_pylist(rows, schema=SCHEMA))
    return {
        "shard": {"path": shard.path, "rows": shard.rows, "bytes": shard.bytes, "sha256": shard.sha256},
        **chunk_stats(rows),
    }
