"""The policy update over one iteration's rollouts: RFT or GRPO, in torch.

Every sequence is prompt + completion; only the tokens the policy sampled are trained (the
prompt and the tool results the engine forced carry mask 0), as in SFT.

RFT (rejection-sampling fine-tuning; STaR, Yuan et al. 2023): keep the correct samples,
at most `per_prompt` distinct ones per prompt, the shortest first, and train on them with
the SFT loss (cross-entropy over the trained tokens), shortest first.

GRPO (DeepSeekMath): per prompt, the advantage of every sample is its reward minus the
group's mean (divided by the group's std with `scale_std`; Dr. GRPO and nanochat do not).
A group whose rewards are all equal teaches nothing and is skipped (DAPO's dynamic
sampling). Per trained token, with r = pi / pi_old the ratio to the rollout policy:
    loss = -min(r * A, clip(r, 1 - eps, 1 + eps) * A) + beta * KL_k3(pi || pi_ref)
with KL_k3 = exp(ref - logp) - (ref - logp) - 1. pi_old is recomputed here before the
first step (the rollout policy is this checkpoint), and only when it can differ from pi
(several epochs or minibatches); with clip_eps None the surrogate is REINFORCE's logp * A.
The per-token losses are averaged over all trained tokens (token: DAPO, nanochat), per
sample then over samples (sequence: GRPO), or summed and divided by samples x
max_new_tokens (constant: Dr. GRPO).

`update_policy` is the Prefect task: it holds a slot of the `gpu` concurrency limit, loads
the policy with its optimizer state, updates it and writes the next policy checkpoint. With
`nproc` > 1 it launches `python -m tasks.rl.update` through torchrun as pretraining does (one
process per GPU): every rank takes its share of each minibatch's sequences and the gradients
are all-reduced before every optimizer step, so N processes make the update one would. (An
explicit all-reduce rather than the DDP wrapper: ranks may get different numbers of
micro-batches in a minibatch, and DDP needs every rank to run the same backward passes.)
Rank 0 writes the checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import safetensors.torch
import torch
import torch.distributed as dist

from models import checkpoint, lake
from models.device import Placement
from models.gpt import GPT
from models.recall import written_by_model
from tasks.rl import CODE, GRPOConfig, RFTConfig, RLConfig
from tasks.runtime import code_version, config_hash, digest, flow_run_id, gpu_slot, lake_task

ROLLOUT_COLUMNS = [
    "prompt_id",
    "sample",
    "prompt_tokens",
    "tokens",
    "mask",
    "reward",
    "reward_strict",
    "reward_lenient",
    "length",
]


@dataclass
class Item:
    """One training sequence: prompt + completion ids, which of them are trained, and its
    advantage (1 for RFT)."""

    ids: list[int]
    trained: list[int]
    advantage: float
    prompt_id: str = ""


def item_of(row: dict[str, Any], advantage: float) -> Item:
    prompt, tokens = list(row["prompt_tokens"]), list(row["tokens"])
    return Item(prompt + tokens, [0] * len(prompt) + [int(m) for m in row["mask"]], advantage, row["prompt_id"])


def groups_of(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["sample"] >= 0:
            groups[r["prompt_id"]].append(r)
    return {k: sorted(v, key=lambda r: r["sample"]) for k, v in sorted(groups.items())}


# -- GRPO -------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, scale_std: bool, eps: float = 1e-4) -> torch.Tensor:
    """Reward minus the group's mean, divided by its (sample) std plus eps with `scale_std`."""
    centered = rewards - rewards.mean()
    return centered / (rewards.std() + eps) if scale_std and len(rewards) > 1 else centered


def grpo_items(rows: list[dict[str, Any]], scale_std: bool) -> tuple[list[Item], dict[str, int]]:
    """Items with their group-relative advantages; groups of equal rewards are skipped."""
    items, skipped = [], 0
    groups = groups_of(rows)
    for group in groups.values():
        rewards = torch.tensor([float(r["reward"]) for r in group], dtype=torch.float64)
        if len(group) < 2 or bool((rewards == rewards[0]).all()):
            skipped += 1
            continue
        advantages = group_advantages(rewards, scale_std)
        items += [item_of(r, float(a)) for r, a in zip(group, advantages)]
    return items, {"groups": len(groups), "groups_skipped": skipped}


# -- RFT --------------------------------------------------------------------------------------


def rft_items(rows: list[dict[str, Any]], per_prompt: int, reward: str = "strict") -> tuple[list[Item], dict[str, int]]:
    """The correct samples (by the `reward` kind), distinct ones only, at most `per_prompt`
    per prompt preferring the shortest; all of them ordered shortest first."""
    chosen: list[dict[str, Any]] = []
    groups = groups_of(rows)
    for group in groups.values():
        seen: set[tuple[int, ...]] = set()
        for r in sorted((r for r in group if r[f"reward_{reward}"] >= 1), key=lambda r: (r["length"], r["sample"])):
            key = tuple(r["tokens"])
            if key not in seen and len(seen) < per_prompt:
                seen.add(key)
                chosen.append(r)
    chosen.sort(key=lambda r: (r["length"], r["prompt_id"], r["sample"]))
    solved = len({r["prompt_id"] for r in chosen})
    return [item_of(r, 1.0) for r in chosen], {"groups": len(groups), "groups_skipped": len(groups) - solved}


# -- losses -----------------------------------------------------------------------------------


def batch(items: list[Item], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (B, T), targets (B, T) with -1 where a token is not trained or is padding,
    and advantages (B,). Sequences are right-padded; causal attention never sees the pad."""
    width = max(len(it.ids) for it in items) - 1
    ids = torch.zeros(len(items), width, dtype=torch.long)
    targets = torch.full((len(items), width), -1, dtype=torch.long)
    for b, it in enumerate(items):
        n = len(it.ids) - 1
        ids[b, :n] = torch.tensor(it.ids[:-1])
        trained = torch.tensor(it.trained[1:], dtype=torch.bool)
        targets[b, :n] = torch.where(trained, torch.tensor(it.ids[1:]), -1)
    advantages = torch.tensor([it.advantage for it in items], dtype=torch.float32)
    return ids.to(device), targets.to(device), advantages.to(device)


def token_logprobs(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log pi(target) at every position (B, T); 0 where the target is -1. The trained tokens
    are the ones the policy wrote (recall never proposes them, as when it sampled them)."""
    return -model(ids, targets, reduction="none", written=written_by_model(targets))


def padded(found: dict[int, torch.Tensor], items: list[Item], width: int) -> torch.Tensor:
    """Log-probabilities kept per item (`found[id(item)]`), padded to a batch of `width` tokens."""
    return torch.stack([torch.nn.functional.pad(found[id(it)], (0, width - len(it.ids) + 1)) for it in items])


def per_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None,
    kl_beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of every token (B, T), zero where `mask` is 0, and what happened (the share
    of trained tokens whose ratio was clipped, the mean KL)."""
    a = advantages[:, None]
    stats = {"clipped": 0.0, "kl": 0.0}
    if clip_eps is None:
        loss = -logp * a
    else:
        old = logp.detach() if old_logp is None else old_logp
        ratio = torch.exp(logp - old)
        clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
        loss = -torch.minimum(ratio * a, clipped * a)
        active = (ratio * a > clipped * a) & mask  # the clipped branch was taken: no gradient
        stats["clipped"] = float(active.sum()) / max(1, int(mask.sum()))
    if kl_beta:
        if ref_logp is None:
            raise ValueError("a KL penalty needs the reference's log-probabilities")
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        loss = loss + kl_beta * kl
        stats["kl"] = float((kl * mask).sum()) / max(1, int(mask.sum()))
    return loss * mask, stats


def reduce_loss(
    per_token: torch.Tensor, mask: torch.Tensor, norm: str, total_tokens: int, total_seqs: int, max_new_tokens: int
) -> torch.Tensor:
    """This micro-batch's share of the minibatch loss (the shares of all micro-batches sum
    to the loss of the whole minibatch, as its normalisation defines it)."""
    if norm == "token":
        return per_token.sum() / max(1, total_tokens)
    if norm == "sequence":
        return (per_token.sum(1) / mask.sum(1).clamp(min=1)).sum() / max(1, total_seqs)
    if norm == "constant":
        return per_token.sum() / max(1, total_seqs * max_new_tokens)
    raise ValueError(f"unknown loss normalisation {norm!r}")


# -- the learner ------------------------------------------------------------------------------


def schedule(config: RLConfig) -> GRPOConfig | RFTConfig:
    """The algorithm's own optimisation settings (lr, epochs, minibatches)."""
    return config.rft if config.algorithm == "rft" else config.grpo


def optimizer_for(model: GPT, config: RLConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=schedule(config).lr, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )


class Learner:
    """Updates a policy in place from one iteration's rollout rows."""

    def __init__(
        self,
        model: GPT,
        optimizer: torch.optim.Optimizer,
        config: RLConfig,
        reference: GPT | None = None,
        placement: Placement | None = None,
    ):
        self.model, self.optimizer, self.config, self.reference = model, optimizer, config, reference
        self.device = next(model.parameters()).device
        # bf16 autocast over the float32 weights on a GPU (models/device.py); log-probabilities
        # leave the model in float32 either way (the loss's cross-entropy is computed in it).
        self.placement = placement or Placement(self.device, torch.float32)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

    def _all_reduce_gradients(self) -> None:
        """Sum every rank's gradients (each rank's loss is its share of the minibatch's), in
        one flat all-reduce. A rank that had no sequence in this minibatch adds zeros."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def items(self, rows: list[dict[str, Any]]) -> tuple[list[Item], dict[str, int]]:
        if self.config.algorithm == "rft":
            return rft_items(rows, self.config.rft.per_prompt, self.config.reward)
        return grpo_items(rows, self.config.grpo.scale_std)

    def _micro(self, items: list[Item]) -> list[list[Item]]:
        n = self.config.micro_batch
        return [items[i : i + n] for i in range(0, len(items), n)]

    @torch.no_grad()
    def _logprobs(self, model: torch.nn.Module, items: list[Item]) -> dict[int, torch.Tensor]:
        """Per item (by id), log-probabilities of its targets under `model`."""
        out = {}
        for micro in self._micro(items):
            ids, targets, _ = batch(micro, self.device)
            with self.placement.autocast():
                logp = token_logprobs(model, ids, targets)
            for it, row in zip(micro, logp):
                out[id(it)] = row[: len(it.ids) - 1].clone()
        return out

    def update(self, rows: list[dict[str, Any]], iteration: int) -> dict[str, Any]:
        cfg, grpo = self.config, self.config.grpo
        items, stats = self.items(rows)
        stats = {**stats, "items": len(items), "trained_tokens": sum(sum(it.trained) for it in items), "steps": 0}
        if not items:
            return {**stats, "loss": None, "grad_norm": None, "clipped": None, "kl": None}
        rl, steps = cfg.algorithm == "grpo", schedule(cfg)
        needs_old = rl and grpo.clip_eps is not None and (steps.epochs > 1 or steps.minibatches > 1)
        old = self._logprobs(self.model, items) if needs_old else {}
        kl_beta = grpo.kl_beta if rl else 0.0
        ref = self._logprobs(self.reference, items) if kl_beta and self.reference is not None else {}
        order_rng = random.Random(f"rl-update:{cfg.seed}:{iteration}")
        losses, norms, clipped, kls = [], [], [], []
        self.model.train()
        for _ in range(steps.epochs):
            ordered = list(items)
            if rl:  # RFT keeps its shortest-first order
                order_rng.shuffle(ordered)
            size = -(-len(ordered) // steps.minibatches)
            for start in range(0, len(ordered), size):
                minibatch = ordered[start : start + size]
                total_tokens = sum(sum(it.trained[1:]) for it in minibatch)
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for micro in self._micro(minibatch[self.rank :: self.world]):  # this rank's share
                    ids, targets, advantages = batch(micro, self.device)
                    mask = targets >= 0
                    with self.placement.autocast():
                        logp = token_logprobs(self.model, ids, targets)
                    per_token, s = per_token_loss(
                        logp,
                        padded(old, micro, ids.size(1)) if old else None,
                        padded(ref, micro, ids.size(1)) if ref else None,
                        advantages,
                        mask,
                        grpo.clip_eps if rl else None,
                        kl_beta,
                    )
                    loss = reduce_loss(
                        per_token,
                        mask,
                        grpo.loss_norm if rl else "token",
                        total_tokens,
                        len(minibatch),
                        cfg.max_new_tokens,
                    )
                    loss.backward()
                    step_loss += float(loss.detach())
                    clipped.append(s["clipped"])
                    kls.append(s["kl"])
                if self.world > 1:
                    self._all_reduce_gradients()
                    summed = torch.tensor([step_loss], dtype=torch.float64, device=self.device)
                    dist.all_reduce(summed)
                    step_loss = float(summed)
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
                self.optimizer.step()
                losses.append(step_loss)
                norms.append(float(norm))
                stats["steps"] += 1
        self.model.eval()
        mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
        clip_share, kl = mean(clipped), mean(kls)
        if self.world > 1:  # the ranks' means, averaged
            shared = torch.tensor([clip_share, kl], dtype=torch.float64, device=self.device)
            dist.all_reduce(shared)
            clip_share, kl = (float(x) / self.world for x in shared)
        return {**stats, "loss": mean(losses), "grad_norm": mean(norms), "clipped": clip_share, "kl": kl}


# -- checkpoints ------------------------------------------------------------------------------


def weights_version(state: dict[str, torch.Tensor]) -> str:
    """The SHA-256 of the weights as safetensors bytes: a policy version that changes
    exactly when the weights do."""
    weights = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return hashlib.sha256(safetensors.torch.save(weights)).hexdigest()


def policy_version(uri: str) -> str:
    """The weights' SHA-256 recorded in a policy checkpoint's manifest."""
    return checkpoint.manifest(uri)["stats"]["weights_sha256"]


def save_policy(
    run: str,
    step: int,
    model: GPT,
    config_json: dict[str, Any],
    *,
    optimizer: dict[str, Any] | None,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
) -> tuple[str, str]:
    """Write policy checkpoint `step` of `run` (weights, optimizer, the run's history so
    far); returns its URI and version."""
    state = model.state_dict()
    version = weights_version(state)
    lineage = {**lineage, "stats": {**lineage.get("stats", {}), "weights_sha256": version}}
    trainer = {"iteration": step, "rng": checkpoint.rng_state()}
    uri = checkpoint.save(
        run,
        step,
        model=state,
        config=config_json,
        optimizer=optimizer,
        trainer=trainer,
        metrics=metrics,
        lineage=lineage,
    )
    return uri, version


def lineage_of(config: RLConfig, parents: list[str], init: str) -> dict[str, Any]:
    return {
        "config_hash": run_key(config),
        "inputs_hash": inputs_key(init),
        "code_version": code_version(*CODE),
        "flow_run_id": flow_run_id(),
        "parents": parents,
    }


def inputs_key(init: str) -> str:
    """What a run's checkpoints must share besides the config: the model RL started from (an
    SFT model trained again is another start, and its old policies are not this run's)."""
    return digest([lake.identity(init)], length=16)


def run_key(config: RLConfig) -> str:
    """What a run's checkpoints must share to be continued: the config, except how long the
    run is and how often (or how much) it is looked at."""
    return config_hash(config.model_copy(update={"iterations": 0, "eval_every": 0, "shown": 0}))


def read_rows(uri: str, columns: list[str]) -> list[dict[str, Any]]:
    return [r for b in lake.iter_batches(uri, columns=columns) for r in b.to_pylist()]


@lake_task(
    inputs=("policy_uri", "rollouts", "init"),
    code=CODE,
    retries=None,
    task_run_name="update {run} iteration {iteration}",
)
def update_policy(
    policy_uri: str, rollouts: str, init: str, run: str, iteration: int, config: RLConfig
) -> dict[str, Any]:
    """Update the policy `policy_uri` (step `iteration` of `run`) on `rollouts`; write step
    iteration + 1. `init` is the reference for the KL penalty. With `nproc` > 1, through
    torchrun (one process per GPU)."""
    from tasks.pretrain import torchrun
    from tasks.runtime import progress

    lineage = lineage_of(config, [policy_uri, rollouts, init], init)
    with gpu_slot(config.gpu_slots):
        if config.nproc > 1:
            body = {
                "policy_uri": policy_uri,
                "rollouts": rollouts,
                "init": init,
                "run": run,
                "iteration": iteration,
                "config": config.model_dump(mode="json"),
                "lineage": lineage,
            }
            with progress(1, f"update {run}") as bar:
                return torchrun(body, config.nproc, False, bar, module="tasks.rl.update")
        return run_update(policy_uri, rollouts, init, run, iteration, config, lineage)


def run_update(
    policy_uri: str, rollouts: str, init: str, run: str, iteration: int, config: RLConfig, lineage: dict[str, Any]
) -> dict[str, Any]:
    """The update itself, in this process: one of `nproc` under torchrun (it joins the
    process group; rank 0 writes the checkpoint and returns its result), or the only one."""
    from models.train import init_distributed

    env, placement = init_distributed(config.device, config.dtype)
    device = placement.device
    ckpt = checkpoint.load(policy_uri, device=device)
    model = GPT(ckpt.model_config).to(device)
    model.load_state_dict(ckpt.model)
    optimizer = optimizer_for(model, config)
    if ckpt.optimizer:
        optimizer.load_state_dict(ckpt.optimizer)
    for group in optimizer.param_groups:  # the config's, even when resuming an older state
        group["lr"], group["weight_decay"] = schedule(config).lr, config.weight_decay
    reference = None
    if config.algorithm == "grpo" and config.grpo.kl_beta:
        reference = checkpoint.load_model(init, device)[0]
    torch.manual_seed(config.seed + iteration)
    stats = Learner(model, optimizer, config, reference, placement).update(
        read_rows(rollouts, ROLLOUT_COLUMNS), iteration
    )
    result: dict[str, Any] = {}
    if env.main:
        metrics = dict(ckpt.metrics or {})
        metrics["updates"] = [*metrics.get("updates", []), {"iteration": iteration, **stats}]
        uri, version = save_policy(
            run, iteration + 1, model, ckpt.config, optimizer=optimizer.state_dict(), metrics=metrics, lineage=lineage
        )
        result = {"checkpoint": uri, "version": version, **stats}
    if env.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return result


def main(argv: list[str]) -> None:
    """What torchrun launches: `python -m tasks.rl.update --config BODY --summary FILE`."""
    parser = argparse.ArgumentParser(description="One RL policy update (a torchrun worker)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--resume", action="store_true", help="(ignored: an update always starts from its policy)")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        body = json.load(f)
    result = run_update(
        body["policy_uri"],
        body["rollouts"],
        body["init"],
        body["run"],
        body["iteration"],
        RLConfig.model_validate(body["config"]),
        body["lineage"],
    )
    if result:  # rank 0
        with open(args.summary, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    from models.train import exit_worker

    main(sys.argv[1:])
    exit_worker()
