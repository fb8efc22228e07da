"""GRPO and RFT on hand-computed cases: advantages, the clipped surrogate, the k3 KL, the loss
normalisations, zero-variance groups, RFT's selection, and a real update on a small GPT."""

from __future__ import annotations

import math

import pytest
import torch

from models.gpt import GPT, GPTConfig
from tasks.rl import GRPOConfig, RFTConfig, RLConfig
from tasks.rl.update import (
    Learner,
    batch,
    group_advantages,
    grpo_items,
    item_of,
    optimizer_for,
    per_token_loss,
    reduce_loss,
    rft_items,
    token_logprobs,
)


def row(
    prompt_id: str,
    sample: int,
    reward: float,
    tokens: list[int],
    mask: list[int] | None = None,
    strict: float | None = None,
) -> dict:
    return {
        "prompt_id": prompt_id,
        "sample": sample,
        "prompt_tokens": [1, 2, 3],
        "tokens": tokens,
        "mask": mask or [1] * len(tokens),
        "reward": reward,
        "reward_strict": reward if strict is None else strict,
        "reward_lenient": reward,
        "length": len(tokens),
    }


def test_group_advantages_mean_and_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert group_advantages(rewards, scale_std=False).tolist() == [0.5, -0.5, -0.5, 0.5]
    std = math.sqrt(1 / 3)  # the sample std of (1, 0, 0, 1)
    a = 0.5 / (std + 1e-4)
    assert group_advantages(rewards, scale_std=True).tolist() == pytest.approx([a, -a, -a, a])
    # A shaped group (0.75 for a longer right answer) keeps its order and sums to zero.
    shaped = group_advantages(torch.tensor([1.0, 0.75, 0.0]), scale_std=False)
    assert shaped.tolist() == pytest.approx([1 - 1.75 / 3, 0.75 - 1.75 / 3, -1.75 / 3])


def test_zero_variance_groups_are_skipped():
    rows = [row("a", i, 1.0, [5]) for i in range(3)] + [row("b", i, 0.0, [5]) for i in range(3)]
    rows += [row("c", 0, 1.0, [5, 6]), row("c", 1, 0.0, [7]), row("c", 2, 0.0, [8])]
    rows += [row("d", -1, 1.0, [9])]  # an evaluation's greedy sample is never a group member
    items, stats = grpo_items(rows, scale_std=False)
    assert stats == {"groups": 3, "groups_skipped": 2}
    assert [it.prompt_id for it in items] == ["c"] * 3
    assert [it.advantage for it in items] == pytest.approx([2 / 3, -1 / 3, -1 / 3])


def test_batch_trains_only_sampled_completion_tokens():
    # prompt [1, 2, 3]; completion 10 (sampled), 11 12 (forced by a tool), 13 (sampled)
    it = item_of(row("a", 0, 1.0, [10, 11, 12, 13], mask=[1, 0, 0, 1]), 0.5)
    ids, targets, adv = batch([it, item_of(row("b", 0, 0.0, [20]), -0.5)])
    assert ids[0].tolist() == [1, 2, 3, 10, 11, 12]
    assert targets[0].tolist() == [-1, -1, 10, -1, -1, 13]
    assert ids[1].tolist()[:3] == [1, 2, 3] and targets[1].tolist() == [-1, -1, 20, -1, -1, -1]  # right-padded
    assert adv.tolist() == [0.5, -0.5]


def test_clipped_surrogate_by_hand():
    # ratios 1.5 and 0.5 (logp against old = 0), advantages +1 and -1, eps 0.2
    logp = torch.log(torch.tensor([[1.5, 0.5], [1.5, 0.5]])).requires_grad_()
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss, stats = per_token_loss(logp, old, None, torch.tensor([1.0, -1.0]), mask, clip_eps=0.2, kl_beta=0.0)
    # A=+1: min(1.5, 1.2) = 1.2 (clipped), min(0.5, 0.8) = 0.5; A=-1: min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 (clipped)
    assert loss.flatten().tolist() == pytest.approx([-1.2, -0.5, 1.5, 0.8])
    assert stats["clipped"] == pytest.approx(0.5)
    loss.sum().backward()
    # d/dlogp of -r*A is -r*A; the clipped branch passes no gradient.
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, -0.5, 1.5, 0.0])


def test_k3_kl_penalty_by_hand():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.zeros(1, 1)  # the reference gives the token probability 1
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = per_token_loss(logp, None, ref, torch.tensor([0.0]), mask, clip_eps=None, kl_beta=0.1)
    kl = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 with d = ref - logp = log 2
    assert stats["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.1 * kl)
    assert (
        per_token_loss(ref, None, ref, torch.tensor([0.0]), mask, None, 0.1)[1]["kl"] == 0.0
    )  # same policy: no penalty
    with pytest.raises(ValueError):
        per_token_loss(logp, None, None, torch.tensor([0.0]), mask, None, 0.1)


def test_no_clip_is_reinforce():
    logp = torch.log(torch.tensor([[0.25, 0.5]])).requires_grad_()
    mask = torch.tensor([[True, False]])
    loss, _ = per_token_loss(logp, None, None, torch.tensor([2.0]), mask, clip_eps=None, kl_beta=0.0)
    assert loss.flatten().tolist() == pytest.approx([-2 * math.log(0.25), 0.0])


@pytest.mark.parametrize(
    "norm, expected", [("token", 6 / 3), ("sequence", (3 / 2 + 3 / 1) / 2), ("constant", 6 / (2 * 4))]
)
def test_loss_normalisations_and_micro_batches_sum_to_the_whole(norm, expected):
    per_token = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    whole = reduce_loss(per_token, mask, norm, total_tokens=3, total_seqs=2, max_new_tokens=4)
    assert whole.item() == pytest.approx(expected)
    parts = sum(reduce_loss(per_token[i : i + 1], mask[i : i + 1], norm, 3, 2, 4) for i in range(2))
    assert parts.item() == pytest.approx(expected)


def test_rft_keeps_distinct_correct_samples_shortest_first():
    rows = [
        row("a", 0, 1.0, [1] * 30),
        row("a", 1, 1.0, [2] * 10),
        row("a", 2, 1.0, [2] * 10),
        row("a", 3, 1.0, [3] * 20),
        row("a", 4, 0.0, [4] * 5),  # wrong: never kept, however short
        row("b", 0, 1.0, [5] * 7),
        row("b", 1, 0.0, [6] * 3),
        row("c", 0, 0.0, [7] * 3),  # nothing right
        row("d", 0, 0.0, [8] * 4, strict=0.0),
        row("d", 1, 1.0, [9] * 4, strict=0.0),  # right only leniently
    ]
    items, stats = rft_items(rows, per_prompt=2, reward="strict")
    assert [(it.prompt_id, len(it.ids) - 3) for it in items] == [("b", 7), ("a", 10), ("a", 20)]
    assert stats == {"groups": 4, "groups_skipped": 2}
    assert all(it.advantage == 1.0 for it in items)
    lenient, _ = rft_items(rows, per_prompt=1, reward="lenient")
    assert [(it.prompt_id, len(it.ids) - 3) for it in lenient] == [("d", 4), ("b", 7), ("a", 10)]


TINY = GPTConfig(vocab_size=32, seq_len=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)


def mean_logprob(model: GPT, tokens: list[int]) -> float:
    ids, targets, _ = batch([item_of(row("x", 0, 0.0, tokens), 0.0)])
    with torch.no_grad():
        return float(token_logprobs(model, ids, targets).sum())


@pytest.mark.parametrize("clip", [None, 0.2])
def test_grpo_update_moves_towards_the_right_sample(clip):
    torch.manual_seed(0)
    model = GPT(TINY)
    torch.nn.init.normal_(model.lm_head.weight, std=0.02)
    config = RLConfig(algorithm="grpo", grpo=GRPOConfig(lr=0.05, clip_eps=clip, epochs=2, minibatches=2), micro_batch=1)
    good, bad = [7, 8, 9], [10, 11, 12]
    rows = [row("p", 0, 1.0, good), row("p", 1, 0.0, bad), row("q", 0, 1.0, [4]), row("q", 1, 1.0, [5])]
    before = mean_logprob(model, good), mean_logprob(model, bad)
    stats = Learner(model, optimizer_for(model, config), config).update(rows, iteration=0)
    after = mean_logprob(model, good), mean_logprob(model, bad)
    assert stats["items"] == 2 and stats["groups_skipped"] == 1 and stats["steps"] == 2 * 2  # epochs x minibatches
    assert after[0] > before[0] and after[1] < before[1]


def test_rft_update_is_the_sft_loss_and_lowers_it():
    torch.manual_seed(0)
    model = GPT(TINY)
    config = RLConfig(algorithm="rft", rft=RFTConfig(lr=0.05, epochs=3, minibatches=1, per_prompt=1))
    rows = [row("p", 0, 1.0, [7, 8, 9]), row("p", 1, 0.0, [10, 11])]
    ids, targets, _ = batch([item_of(rows[0], 1.0)])
    with torch.no_grad():
        sft_loss = float(model(ids, targets))  # mean cross-entropy over the trained tokens
    stats = Learner(model, optimizer_for(model, config), config).update(rows, iteration=0)
    assert stats["items"] == 1 and stats["steps"] == 3
    assert stats["loss"] < sft_loss
    # One step's loss is computed before that step updates anything: exactly the SFT loss.
    torch.manual_seed(0)
    fresh = GPT(TINY)
    one = RLConfig(algorithm="rft", rft=RFTConfig(lr=1e-3, epochs=1, minibatches=1))
    assert Learner(fresh, optimizer_for(fresh, one), one).update(rows, 0)["loss"] == pytest.approx(sft_loss, rel=1e-5)


def test_nothing_to_learn_makes_no_step():
    model = GPT(TINY)
    config = RLConfig(algorithm="grpo")
    rows = [row("p", i, 0.0, [3]) for i in range(4)]
    stats = Learner(model, optimizer_for(model, config), config).update(rows, iteration=0)
    assert stats["steps"] == 0 and stats["loss"] is None and stats["groups_skipped"] == 1


@pytest.mark.slow
def test_two_processes_through_torchrun_make_the_update_one_process_makes(tmp_path):
    """The update's torchrun path (2 gloo processes, each its share of every minibatch,
    gradients all-reduced) writes the weights the one-process update writes; the ranks get
    different numbers of micro-batches, which a DDP wrapper could not take."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    import pyarrow as pa

    from models import checkpoint, lake
    from tasks.rl.update import run_update
    from tests.conftest import free_port

    torch.manual_seed(0)
    model = GPT(TINY)
    torch.nn.init.normal_(model.lm_head.weight, std=0.02)
    policy = checkpoint.save(
        str(tmp_path / "policy"), 0, model=model.state_dict(), config={"model": dataclasses.asdict(TINY)}
    )
    rows = [row(p, i, float(i % 2 == 0), [4 + i, 9, 7 + len(p)]) for p in ("p", "q") for i in range(3)]
    rollouts = str(tmp_path / "rollouts")
    lake.write_dataset(rollouts, [pa.Table.from_pylist(rows)], kind="rl-rollouts")
    config = RLConfig(
        algorithm="grpo", grpo=GRPOConfig(lr=0.05, epochs=2, minibatches=2, clip_eps=0.2), micro_batch=1, device="cpu"
    )
    one = run_update(policy, rollouts, policy, str(tmp_path / "one"), 0, config, {})
    body = {
        "policy_uri": policy,
        "rollouts": rollouts,
        "init": policy,
        "run": str(tmp_path / "two"),
        "iteration": 0,
        "config": config.model_copy(update={"nproc": 2}).model_dump(mode="json"),
        "lineage": {},
    }
    (tmp_path / "body.json").write_text(json.dumps(body))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "tasks.rl.update",
            "--config",
            str(tmp_path / "body.json"),
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "summary.json").read_text())
    assert (
        two["checkpoint"].endswith("two/step-000001")
        and two["items"] == one["items"] == 6
        and two["steps"] == one["steps"] == 4
    )
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    a, b = checkpoint.load(one["checkpoint"]).model, checkpoint.load(two["checkpoint"]).model
    assert any(not torch.equal(a[k], model.state_dict()[k]) for k in a)  # it moved
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
