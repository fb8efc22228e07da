"""Muon: momentum whose update is orthogonalized before it is applied, for hidden matrices.

AdamW scales each weight's step by that weight's own gradient history, so a matrix's update
is dominated by the few directions its gradient points in most. Muon (Jordan et al. 2024, the
optimizer of the nanoGPT speedrun and nanochat) replaces the momentum matrix M = U S V^T by
(approximately) U V^T: every direction the gradient has gets the same step size, which learns
the rare directions (a feature seen in few batches) as fast as the common ones. At the tiny
preset's scale it reaches a given loss in fewer steps than AdamW (docs/sizing.md, Optimizer).

Only 2-D weights inside the blocks take it. Embeddings (a lookup, not a linear map: each row
sees its own token's gradients) and the norm gains stay on AdamW, as in nanochat.

U V^T without an SVD: a few Newton-Schulz steps of the odd polynomial
p(x) = a x + b x^3 + c x^5 applied to the singular values (X <- a X + (b A + c A^2) X with
A = X X^T), starting from X = M / ||M||_F so that every singular value is at most 1. The
coefficients are chosen for speed, not exactness: five steps take every singular value above
~0.001 into roughly [0.7, 1.2], which is as good as U V^T for a training step and costs a few
small matrix products.
"""

from __future__ import annotations

import torch

# Quintic Newton-Schulz coefficients: a large slope at 0 (a) pulls small singular values up
# fast; b and c bring the polynomial back down near 1 (Jordan et al., "Muon", 2024).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximation of U V^T for `matrix` = U S V^T (2-D); the same shape back."""
    a, b, c = NS_COEFFICIENTS
    x = matrix / (matrix.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the short side: X X^T is then the smaller square
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for the groups flagged `muon: True` (2-D parameters), AdamW for the others.

    A Muon group's step is SGD with Nesterov momentum whose update is `orthogonalize`d and
    scaled by sqrt(max(1, rows / cols)), so that a tall matrix (an MLP's input projection)
    moves its outputs as much per step as a square one. Weight decay is decoupled in both
    kinds of group (the weight is multiplied by 1 - lr * weight_decay). One optimizer, not
    two side by side, so the trainer's schedule, checkpoints and resume treat it as any other.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        ns_steps: int = 5,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, ns_steps=ns_steps, betas=betas, eps=eps, weight_decay=weight_decay, muon=False
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon groups take 2-D parameters only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                (self._muon_step if group["muon"] else self._adamw_step)(p, group)
        return loss

    def _muon_step(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer, momentum = state["momentum_buffer"], group["momentum"]
        buffer.mul_(momentum).add_(p.grad)
        direction = p.grad.add(buffer, alpha=momentum)  # Nesterov
        update = orthogonalize(direction.float(), group["ns_steps"]).to(p.dtype)
        p.add_(update, alpha=-group["lr"] * max(1.0, p.size(0) / p.size(1)) ** 0.5)

    def _adamw_step(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        denominator = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denominator, value=-step_size)
