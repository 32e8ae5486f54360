"""Muon for weight matrices, AdamW for the rest, as one optimizer.

Muon replaces a matrix's momentum by its nearest semi-orthogonal matrix (a few Newton-Schulz
iterations), so every direction of the update moves at the same rate, the rarely excited
ones as fast as the dominant ones. The update is scaled to the RMS of an AdamW update
(0.2 * sqrt(max(rows, cols))), so AdamW's learning rates are in the right range for both
kinds of parameters (each group keeps its own; the default recipe gives the matrices half
of AdamW's peak) and one weight decay and one-cycle schedule serve both. Convolution filters
are treated as (out, in * kh * kw) matrices; vectors (biases, norms) and the output layer
stay on AdamW. The orthogonalization costs a few matrix products per weight matrix and step
(~9-19 ms a step for the default BiLSTM(128) model on one CPU thread).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# Quintic Newton-Schulz coefficients that drive singular values towards ~1 in five steps.
_NS = (3.4445, -4.7750, 2.0315)


def orthogonalize(
    g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """The semi-orthogonal factor of the 2-D matrix `g` (approximately U V^T of its SVD).

    Quintic Newton-Schulz, in bfloat16 as Muon does or in `dtype`: singular values of the
    stronger directions end near 1 (0.7-1.2), the weakest ones (noise) stay small. Each
    iteration recomputes X X^T from X, which keeps bfloat16's rounding from accumulating.
    """
    x = g.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.t()
    x = (x / (x.norm() + 1e-7)).to(dtype).contiguous()
    a, b, c = _NS
    for _ in range(steps):
        s = x @ x.t()
        x = a * x + (b * s + c * s @ s) @ x
    out: torch.Tensor = x.float()
    return out.t() if tall else out


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer, two rules: groups with `muon=True` take Muon steps, others AdamW.

    Build it with `param_groups(module, head)`: every matrix or filter except those of `head`
    goes to Muon. `ns_dtype`: the orthogonalization's precision; bfloat16 (Muon's) where
    the trainer's own products run in it, float32 where they do (on CPUs whose bfloat16
    products are slower, float32 halves its cost: ~9 instead of ~19 ms a step).
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            betas=betas,
            eps=eps,
            ns_steps=ns_steps,
            muon=False,
        )
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype  # not a group setting: checkpoints keep plain numbers only

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])
                if group["muon"]:
                    self._muon(p, group)
                else:
                    self._adamw(p, group)
        return loss

    def _muon(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["momentum"] = torch.zeros_like(p)
        buf = state["momentum"]
        grad = p.grad
        assert grad is not None  # step() visits parameters with a gradient only
        buf.mul_(group["momentum"]).add_(grad)
        g = grad.add(buf, alpha=group["momentum"])  # Nesterov
        matrix = g.reshape(g.shape[0], -1)
        update = orthogonalize(matrix, group["ns_steps"], self.ns_dtype)
        scale = 0.2 * math.sqrt(max(matrix.shape))
        p.add_(update.view_as(p).to(p.dtype), alpha=-group["lr"] * scale)

    def _adamw(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        bias1 = 1 - beta1 ** state["step"]
        bias2 = 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"] / bias2).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)


def param_groups(module: nn.Module, head: nn.Module) -> list[dict[str, Any]]:
    """Muon for `module`'s matrices and filters, AdamW for its vectors and for `head`."""
    skip = {id(p) for p in head.parameters()}
    muon = [p for p in module.parameters() if p.ndim >= 2 and id(p) not in skip]
    ids = {id(p) for p in muon}
    other = [p for p in module.parameters() if id(p) not in ids]
    return [{"params": muon, "muon": True}, {"params": other, "muon": False}]
