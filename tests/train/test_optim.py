"""Muon for matrices, AdamW for the rest: orthogonalized updates in the trainer's precision,
the parameter split, and a state that survives a checkpoint."""

from __future__ import annotations

import copy

import lightning
import pytest
import torch
from torch import nn

from ocrtrain.train.lit_module import OCRLitModule
from ocrtrain.train.models.crnn import CRNN
from ocrtrain.train.optim import MuonAdamW, orthogonalize, param_groups


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(768, 192), (192, 768), (96, 576), (192, 192), (16, 9)])
def test_orthogonalize_approximates_the_polar_factor(
    shape: tuple[int, int], dtype: torch.dtype
) -> None:
    g = torch.Generator().manual_seed(0)
    # A gradient-like matrix: a few strong directions over weak noise.
    m = torch.randn(shape[0], 4, generator=g) @ torch.randn(4, shape[1], generator=g)
    m += 0.01 * torch.randn(*shape, generator=g)
    out = orthogonalize(m, dtype=dtype)
    assert out.shape == m.shape and out.dtype == torch.float32
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    # The strong directions move at the same rate (singular values near 1: the quintic
    # iteration stops within 0.7-1.2), the noise stays weaker; singular vectors are kept.
    sv = torch.linalg.svdvals(out)
    assert float(sv.max()) < 1.25 and float(sv[:4].min()) > 0.65, sv
    assert float(sv[4:].max()) < float(sv[:4].min()), sv
    along = u[:, :4].t() @ out @ vh[:4].t()  # the update in the strong directions' basis
    assert torch.allclose(along, torch.eye(4), atol=0.35), along


def _net() -> CRNN:
    torch.manual_seed(0)
    return CRNN(12, channels=(4, 8, 8, 8), hidden=8, lstm_layers=1, stem="stride")


def test_matrices_and_filters_take_muon_vectors_and_head_take_adamw() -> None:
    net = _net()
    muon, other = param_groups(net, net.head)
    assert muon["muon"] and not other["muon"]
    muon_ids = {id(p) for p in muon["params"]}
    assert all(p.ndim >= 2 for p in muon["params"])
    assert id(net.head.weight) not in muon_ids and id(net.rnn.fwd[0].weight_hh_l0) in muon_ids
    assert id(net.cnn[0].weight) in muon_ids  # a convolution filter, as (out, in * kh * kw)
    every = [id(p) for p in net.parameters()]
    assert sorted(every) == sorted([*muon_ids, *(id(p) for p in other["params"])])


def _fit(net: nn.Module, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    torch.manual_seed(1)
    images = torch.rand(6, 1, 32, 48)
    target = torch.randint(0, 12, (12, 6))
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(images).permute(1, 2, 0), target.t())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_muon_adamw_fits_a_batch() -> None:
    net = _net()
    losses = _fit(net, MuonAdamW(param_groups(net, net.head), lr=1e-2), 100)
    assert losses[-1] < 0.1 * losses[0], losses


def test_state_restored_from_a_state_dict_continues_identically() -> None:
    a = _net()
    opt_a = MuonAdamW(param_groups(a, a.head), lr=3e-3, weight_decay=1e-2)
    _fit(a, opt_a, 5)
    b = _net()
    b.load_state_dict(a.state_dict())
    opt_b = MuonAdamW(param_groups(b, b.head), lr=3e-3, weight_decay=1e-2)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from a checkpoint file
    assert _fit(a, opt_a, 3) == _fit(b, opt_b, 3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_muon_and_adamw_groups_peak_at_their_own_learning_rates() -> None:
    module = OCRLitModule(
        net={"channels": [4, 8, 8, 8], "hidden": 8, "lstm_layers": 1},
        lr=6e-3,
        muon_lr=3e-3,
        optimizer="muon",
        pct_start=0.1,
    )
    opt = MuonAdamW(param_groups(module.net, module.net.head))
    sched = module._one_cycle(opt, total=100)
    for _ in range(10):  # to the end of the warm-up: the peak
        opt.step()
        sched.step()
    assert [g["muon"] for g in opt.param_groups] == [True, False]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([3e-3, 6e-3], rel=1e-2)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)]
)
def test_muon_orthogonalizes_in_the_trainers_precision(precision: str, dtype: torch.dtype) -> None:
    """Where precision `auto` chose float32 (bfloat16 products are slower on that CPU), the
    orthogonalization's products are float32 too."""
    module = OCRLitModule(
        net={"channels": [4, 8, 8, 8], "hidden": 8, "lstm_layers": 1},
        optimizer="muon",
        scheduler="constant",
    )
    module.trainer = lightning.Trainer(
        accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False
    )
    opt = module.configure_optimizers()
    assert isinstance(opt, MuonAdamW) and opt.ns_dtype == dtype
