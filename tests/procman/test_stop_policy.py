"""The stop state machine, none -> graceful -> kill, without processes: time is passed in."""

from __future__ import annotations

import signal

from ocrtrain.procman.stop_policy import StopPhase, StopPolicy, StopRequest, StopStep

T0 = 1000.0


def _stop_command(force: bool = False, grace: float | None = None) -> StopRequest:
    return StopRequest(source="ocrtrain stop", force=force, grace=grace)


def test_nobody_asked() -> None:
    policy = StopPolicy(grace=10.0)
    assert policy.phase is StopPhase.NONE
    assert policy.request is None and policy.reason is None and policy.deadline is None
    assert policy.expire(T0 + 1e6) is StopStep.NOTHING
    assert policy.teardown_grace() == 10.0


def test_signal_starts_the_grace_and_its_end_kills() -> None:
    policy = StopPolicy(grace=10.0)
    step = policy.ask(StopRequest.from_signal(signal.SIGINT), T0, child_running=True)
    assert step is StopStep.SIGNAL
    assert policy.phase is StopPhase.GRACEFUL
    assert policy.deadline == T0 + 10.0
    assert policy.reason == "stopped by SIGINT"
    assert policy.expire(T0 + 9.9) is StopStep.NOTHING
    assert policy.expire(T0 + 10.0) is StopStep.KILL
    assert policy.phase is StopPhase.KILL
    assert policy.deadline is None
    assert policy.reason == "stopped by SIGINT; SIGKILL after grace of 10 s expired"
    assert policy.teardown_grace() == 0.0


def test_second_signal_while_stopping_kills_now() -> None:
    policy = StopPolicy(grace=10.0)
    policy.ask(StopRequest.from_signal(signal.SIGINT), T0, child_running=True)
    step = policy.ask(StopRequest.from_signal(signal.SIGTERM), T0 + 1, child_running=True)
    assert step is StopStep.KILL
    assert policy.kill_why == "second SIGTERM while stopping"
    assert policy.reason == "stopped by SIGINT; SIGKILL after second SIGTERM while stopping"


def test_second_stop_command_changes_nothing() -> None:
    policy = StopPolicy(grace=10.0)
    policy.ask(_stop_command(), T0, child_running=True)
    assert policy.ask(_stop_command(), T0 + 1, child_running=True) is StopStep.NOTHING
    assert policy.phase is StopPhase.GRACEFUL
    assert policy.deadline == T0 + 10.0


def test_force_kills_at_once_and_says_so() -> None:
    policy = StopPolicy(grace=10.0)
    step = policy.ask(_stop_command(force=True), T0, child_running=True)
    assert step is StopStep.KILL
    assert policy.phase is StopPhase.KILL
    assert policy.reason == "killed by ocrtrain stop (force)"  # no "; SIGKILL after" suffix
    assert policy.request is not None and policy.request.force


def test_force_after_a_graceful_stop() -> None:
    policy = StopPolicy(grace=10.0)
    policy.ask(StopRequest.from_signal(signal.SIGTERM), T0, child_running=True)
    assert policy.ask(_stop_command(force=True), T0 + 1, child_running=True) is StopStep.KILL
    assert policy.reason == "killed by ocrtrain stop (force)"
    assert policy.request is not None and policy.request.source == "SIGTERM"  # the first one


def test_a_requests_grace_overrides_the_runs() -> None:
    policy = StopPolicy(grace=10.0)
    policy.ask(_stop_command(grace=2.5), T0, child_running=True)
    assert policy.deadline == T0 + 2.5
    assert policy.teardown_grace() == 2.5
    assert policy.expire(T0 + 2.5) is StopStep.KILL
    assert policy.kill_why == "grace of 2.5 s expired"


def test_limit_reason_is_kept() -> None:
    policy = StopPolicy(grace=10.0)
    request = StopRequest(source="limit timeout", reason="stopped: ran longer than --timeout 1 s")
    assert policy.ask(request, T0, child_running=True) is StopStep.SIGNAL
    assert policy.reason == "stopped: ran longer than --timeout 1 s"
    assert request.signal == signal.SIGTERM and not request.by_signal


def test_after_the_child_exited_only_force_matters() -> None:
    policy = StopPolicy(grace=10.0)
    step = policy.ask(StopRequest.from_signal(signal.SIGINT), T0, child_running=False)
    assert step is StopStep.NOTHING
    assert policy.phase is StopPhase.NONE and policy.request is None
    forced = _stop_command(force=True)
    assert policy.ask(forced, T0, child_running=False, killing=True) is StopStep.NOTHING
    assert policy.ask(forced, T0, child_running=False, killing=False) is StopStep.KILL
    assert policy.request is None  # the run ended by itself; its teardown was cut short
    assert policy.reason == "stopped; SIGKILL after forced by ocrtrain stop"


def test_unknown_signal_number_has_a_name() -> None:
    request = StopRequest.from_signal(99)
    assert request.source == "signal 99"
