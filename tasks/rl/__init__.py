"""Reinforcement learning on problems with known answers: sample, score, reinforce the good.

    problems.py   problems with integer answers: generated (tasks/mathgen.py, a difficulty
                  knob; trained on the training families only, judged on new seeds of
                  them and on the held-out families) and users' datasets
    reward.py     the reward: the final answer (tasks/sft/answers.py) against the known one,
                  strict and lenient; the length shaping among correct samples
    rollouts.py   one task per chunk of prompts: a group of G samples per prompt from the
                  policy's versioned checkpoint, scored, written as a rollout shard
    update.py     the policy update (RFT or GRPO) in torch, and the task that runs it
    evaluate.py   pass@1 (greedy), pass@k (unbiased), mean reward and length on held-out problems
    report.py     the reward curve, the before/after table, the best and worst rollouts

flows/rl.py runs the iterations: snapshot → rollouts (mapped) → update → evaluate every N.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.runtime import PlacedConfig, StageConfig

CODE = ("tasks.rl", "tasks.sft.answers", "tasks.mathgen", "models")


class ProblemConfig(StageConfig):
    """Where the problems come from and how they are held out."""

    difficulty: list[int] = Field(
        default_factory=lambda: [1], description="mathgen difficulties (1-5), cycled over the problems"
    )
    families: list[str] = Field(
        default_factory=list,
        description="mathgen training families to train on (empty: all of mathgen.TRAIN_FAMILIES)",
    )
    heldout_families: bool = Field(
        True,
        description="Evaluate on mathgen's held-out families too (half the evaluation problems): families no training set draws from",
    )
    train: int = Field(
        512, ge=0, description="Generated training problems (iterations draw from them in a seeded order)"
    )
    eval: int = Field(
        100, ge=0, description="Generated evaluation problems (other seeds; half of them held-out families)"
    )
    datasets: list[str] = Field(
        default_factory=list,
        description="Users' problem files (JSONL/Parquet with prompt or question, and answer): URIs or globs",
    )
    eval_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of users' rows held out for evaluation (by an id hash)"
    )


class GRPOConfig(StageConfig):
    """Group-relative policy optimisation (DeepSeekMath), with the later fixes as switches."""

    lr: float = Field(5e-5, gt=0, description="AdamW learning rate (tiny: 2e-4 with one step per iteration diverged)")
    epochs: int = Field(1, ge=1, description="Passes over an iteration's rollouts")
    minibatches: int = Field(
        4,
        ge=1,
        description="Optimizer steps per pass (the rollouts split into this many; the ratio to the rollout policy then matters)",
    )
    scale_std: bool = Field(
        False, description="Divide advantages by the group's std (GRPO) or not (Dr. GRPO, nanochat)"
    )
    clip_eps: float | None = Field(
        0.2, ge=0, description="PPO ratio clipping against the rollout policy; None: no ratio"
    )
    kl_beta: float = Field(
        0.0, ge=0, description="KL penalty to the initial policy (k3 estimator); 0 loads no reference"
    )
    loss_norm: Literal["token", "sequence", "constant"] = Field(
        "token",
        description="token: over all sampled tokens (DAPO); sequence: per sample, then mean (GRPO); constant: by samples x max_new_tokens (Dr. GRPO)",
    )


class RFTConfig(StageConfig):
    """Rejection-sampling fine-tuning (STaR, RFT): keep the correct samples, train on them."""

    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (tiny: 3e-4 diverged)")
    epochs: int = Field(2, ge=1, description="Passes over an iteration's right samples")
    minibatches: int = Field(2, ge=1, description="Optimizer steps per pass")
    per_prompt: int = Field(
        2, ge=1, description="At most this many distinct correct samples per prompt, the shortest first"
    )


class RLConfig(PlacedConfig):
    name: str = Field(
        "rl", description="Policies go to checkpoints/{name}/step-N (N = iteration), rollouts to rollouts/{name}/"
    )
    init: str | None = Field(
        None, description="The SFT checkpoint to start from (URI or run name; default: the sft run)"
    )
    algorithm: Literal["rft", "grpo"] = Field(
        "rft", description="rft: train on the right samples; grpo: group-relative advantages"
    )
    iterations: int = Field(10, ge=0, description="Rollout-and-update rounds")
    seed: int = Field(0, description="Seeds the problems, their order and every sample")
    problems: ProblemConfig = Field(default_factory=ProblemConfig)
    prompts: int = Field(32, ge=1, description="Prompts per iteration")
    samples: int = Field(8, ge=1, description="Samples per prompt (the group, G)")
    chunk: int = Field(8, ge=1, description="Prompts per rollout task")
    max_new_tokens: int = Field(144, ge=8, description="Per sample, tool results included (capped by the context)")
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(50, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per rollout worker (more threads contend on a shared CPU)")
    reward: Literal["strict", "lenient"] = Field(
        "strict", description="strict: the reply ends 'Answer: N'; lenient: its last number"
    )
    tool: Literal["any", "calculator", "python"] = Field(
        "any",
        description="any: every tool runs and the policy chooses; calculator or python: the prompt ends in that tool's opening token and only it runs",
    )
    length_penalty: float = Field(
        0.0, ge=0, lt=1, description="Among a group's correct samples, up to this much reward off the longest"
    )
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="0: no clipping")
    micro_batch: int = Field(32, ge=1, description="Sequences per forward pass (memory, not maths)")
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    rft: RFTConfig = Field(default_factory=RFTConfig)
    eval_every: int = Field(
        5, ge=0, description="Evaluate every N iterations (and before the first, and after the last); 0: only then"
    )
    eval_samples: int = Field(4, ge=1, description="Samples per held-out problem for pass@k (besides the greedy one)")
    eval_chunk: int = Field(10, ge=1, description="Held-out problems per evaluation task")
    shown: int = Field(3, ge=0, description="Best and worst rollouts shown in the report")
    gpu_slots: int = Field(1, ge=1, description="Size of the `gpu` concurrency limit if a local run must create it")
    nproc: int = Field(
        1, ge=1, description="Processes for the policy update: >1 launches torchrun (one per GPU), as pretraining"
    )
