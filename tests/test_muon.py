"""Muon: the orthogonalized update, which parameters take it, and exact resume with it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models import checkpoint
from models.gpt import GPT
from models.muon import Muon, orthogonalize
from models.train import optimizer_for, train
from tests.test_train import MODEL, TRAIN, Crash, corpus, crash_at, history, spec  # noqa: F401  (corpus: a fixture)

MUON = dataclasses.replace(TRAIN, optimizer="muon", muon_lr=0.05)


def with_singular_values(rows: int, cols: int, values: torch.Tensor, seed: int):
    """U diag(values) V^T with random orthonormal U, V; returns the matrix, U and V."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    k = min(rows, cols)
    return u[:, :k] @ torch.diag(values) @ v[:, :k].T, u[:, :k], v[:, :k]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(2, 48),
    cols=st.integers(2, 48),
    spread=st.floats(1.0, 300.0),  # largest over smallest singular value
    scale=st.floats(1e-4, 1e3),
    seed=st.integers(0, 2**16),
)
def test_orthogonalize_keeps_the_singular_vectors_and_takes_the_values_near_one(rows, cols, spread, scale, seed):
    k = min(rows, cols)
    values = scale * torch.logspace(0, -torch.log10(torch.tensor(spread)).item(), k, dtype=torch.float64)
    matrix, u, v = with_singular_values(rows, cols, values, seed)
    out = orthogonalize(matrix)
    assert out.shape == matrix.shape
    inner = u.T @ out @ v  # diagonal when the singular vectors are kept
    assert torch.allclose(inner, torch.diag(torch.diagonal(inner)), atol=1e-6 * k)
    # Five quintic steps take every value down to 1/300 of the largest into about [0.68, 1.13]
    # (into [0, 1] exactly would need many more steps, and a training step does not need it).
    assert torch.diagonal(inner).min() > 0.6 and torch.diagonal(inner).max() < 1.25


def test_a_tiny_singular_value_is_not_blown_up_and_the_zero_matrix_stays_zero():
    values = torch.tensor([1.0, 1e-9], dtype=torch.float64)
    matrix, u, v = with_singular_values(3, 2, values, 0)
    out = orthogonalize(matrix)
    assert abs((u.T @ out @ v)[1, 1]) < 1e-6  # noise directions stay small
    assert torch.equal(orthogonalize(torch.zeros(4, 3)), torch.zeros(4, 3))


def test_the_blocks_matrices_take_muon_and_the_embedding_and_gains_take_adamw():
    model = GPT(MODEL)
    optimizer = optimizer_for(model, MUON, torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon = [names[id(p)] for g in optimizer.param_groups if g["muon"] for p in g["params"]]
    adamw = [names[id(p)] for g in optimizer.param_groups if not g["muon"] for p in g["params"]]
    assert muon and all(n.startswith("blocks.") and n.endswith("_proj.weight") for n in muon)
    assert "embed.weight" in adamw and all(not n.endswith("_proj.weight") for n in adamw)
    assert sorted(muon + adamw) == sorted(names.values())
    (group,) = [g for g in optimizer.param_groups if g["muon"]]
    assert group["lr"] == MUON.muon_lr and group["lr_scale"] == pytest.approx(MUON.muon_lr / MUON.lr)


def test_muon_refuses_a_vector_in_a_muon_group():
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(3))], "muon": True}])


def test_a_muon_run_learns_and_resumes_bit_for_bit(corpus):  # noqa: F811
    straight = spec(corpus, "muon-straight")
    train(MODEL, MUON, straight)
    reference = history(straight.out)
    evals = {e["step"]: e["val_loss"] for e in reference["eval"]}
    assert evals[20] < evals[0] - 0.5
    resumed = spec(corpus, "muon-resumed")
    with pytest.raises(Crash):
        train(MODEL, MUON, resumed, on_step=crash_at(13))
    train(MODEL, MUON, resumed, resume=True)
    assert [r["loss"] for r in history(resumed.out)["train"]] == [r["loss"] for r in reference["train"]]
    a, b = checkpoint.load(resumed.out), checkpoint.load(straight.out)
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    # the schedule scales Muon's learning rate as it scales AdamW's
    lrs = [g["lr"] for g in a.optimizer["param_groups"]]
    assert sorted(lrs)[-1] == pytest.approx(sorted(lrs)[0] * MUON.muon_lr / MUON.lr)


def test_its_adamw_groups_step_exactly_as_torchs_adamw():
    """The groups without `muon` are AdamW written out (one optimizer object holds both kinds);
    on the same gradients they must match torch's own, weight decay and bias correction included."""
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5, 3))
    with torch.no_grad():
        theirs.copy_(ours)
    mine = Muon([{"params": [ours], "weight_decay": 0.1}], lr=0.01, betas=(0.9, 0.95))
    reference = torch.optim.AdamW([theirs], lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    for _ in range(7):
        grad = torch.randn(5, 3)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    assert torch.allclose(ours, theirs, atol=1e-7, rtol=0)
