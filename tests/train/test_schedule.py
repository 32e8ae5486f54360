"""The one-cycle schedule by steps or by a time budget (`schedule.TimedOneCycleLR`)."""

from __future__ import annotations

import io

import torch
from torch.optim.lr_scheduler import OneCycleLR

from ocrtrain.train.schedule import TimedOneCycleLR

TOTAL = 50


def _opt() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=0.01)


def _walk(sched: OneCycleLR, steps: int) -> list[tuple[float, float]]:
    """(lr, beta1) after each of `steps` steps."""
    out = []
    for _ in range(steps):
        sched.optimizer.step()
        sched.step()
        group = sched.optimizer.param_groups[0]
        out.append((group["lr"], group["betas"][0]))
    return out


def test_without_a_budget_it_is_the_one_cycle_schedule() -> None:
    kw = {"max_lr": 0.01, "total_steps": TOTAL, "pct_start": 0.1}
    plain = _walk(OneCycleLR(_opt(), **kw), TOTAL - 1)  # type: ignore[arg-type]
    timed = _walk(TimedOneCycleLR(_opt(), **kw), TOTAL - 1)  # type: ignore[arg-type]
    assert timed == plain


def test_the_cycle_follows_the_budget_when_time_runs_ahead_of_the_steps() -> None:
    kw = {"max_lr": 0.01, "total_steps": TOTAL, "pct_start": 0.1}
    reference = [(0.0, 0.0), *_walk(OneCycleLR(_opt(), **kw), TOTAL - 1)]  # type: ignore[arg-type]
    spent = [0.0]
    sched = TimedOneCycleLR(_opt(), progress=lambda: spent[0], **kw)  # type: ignore[arg-type]
    for fraction, step in ((0.5, 24), (0.98, 48), (1.0, 49), (3.0, 49)):
        spent[0] = fraction
        sched.optimizer.step()
        sched.step()
        group = sched.optimizer.param_groups[0]
        assert (group["lr"], group["betas"][0]) == reference[step], fraction
    # Steps further along than the clock win: a fast machine ends the cycle by steps.
    spent[0] = 0.0
    sched = TimedOneCycleLR(_opt(), progress=lambda: spent[0], **kw)  # type: ignore[arg-type]
    assert _walk(sched, 10)[-1] == reference[10]


def test_its_state_saves_without_the_clock_and_loads_under_a_new_one() -> None:
    kw = {"max_lr": 0.01, "total_steps": TOTAL, "pct_start": 0.1}
    sched = TimedOneCycleLR(_opt(), progress=lambda: 0.5, **kw)  # type: ignore[arg-type]
    _walk(sched, 3)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)  # a lambda in the state could not be pickled
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    assert "_progress" not in state and state["last_epoch"] == 3
    resumed = TimedOneCycleLR(_opt(), progress=lambda: 0.75, **kw)  # type: ignore[arg-type]
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 3 and resumed.position() == 36
