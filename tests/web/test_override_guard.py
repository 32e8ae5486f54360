"""The UI's override guard: unit cases, and a fuzz (Hypothesis) of a few thousand generated
overrides asserting that none that would reach code, Hydra's settings or a new key passes.

The fuzz's oracle does not reuse the guard: it applies each accepted override to the composed
config with OmegaConf and compares what instantiation would see (every `_`-key, every
interpolation, the set of keys) with the config before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from web_helpers import REAL_CONFIGS

from ocrtrain.hydra_checks import leaves
from ocrtrain.web import override_guard as guard
from ocrtrain.web.hydra_form import ConfigTree, OverrideError, check_syntax, format_value


def test_resume_is_auto_or_a_known_checkpoint(tmp_path: Path) -> None:
    known = tmp_path / "outputs" / "receipts" / "checkpoints"
    known.mkdir(parents=True)
    (known / "last.ckpt").write_bytes(b"x")
    (tmp_path / "other.ckpt").write_bytes(b"x")
    folders = lambda: [known]  # noqa: E731
    for ok in (
        None,
        "auto",
        "null",
        str(known / "last.ckpt"),
        "outputs/receipts/checkpoints/last.ckpt",
    ):
        guard.check_resume({"resume": ok}, tmp_path, folders)
    for bad in (
        str(tmp_path / "other.ckpt"),
        str(known / "missing.ckpt"),
        str(known),
        "/etc/hostname",
    ):
        with pytest.raises(guard.GuardError, match="not a checkpoint of a run this UI knows"):
            guard.check_resume({"resume": bad}, tmp_path, folders)


def test_outputs_stay_under_the_outputs_root(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    ok = {"experiment_name": "a", "paths": {"outputs_root": "outputs", "ckpt_dir": "outputs/a/c"}}
    guard.check_outputs(ok, root, tmp_path)
    loggers = {"tensorboard": {"save_dir": "outputs/a", "name": "tensorboard", "version": ""}}
    guard.check_outputs(
        {"logger": loggers, "callbacks": {"x": {"_target_": "a.B"}}}, root, tmp_path
    )
    for config in (
        {"experiment_name": "..", "paths": {}},
        {"experiment_name": "a/b", "paths": {}},
        {"paths": {"output_dir": "outputs/../../x"}},
        {"paths": {"ckpt_dir": "/tmp/x"}},
        {"callbacks": {"best": {"dirpath": "/tmp/x"}}},
        {"callbacks": {"metrics": {"path": "../m.jsonl"}}},
        {"logger": {"mlflow": {"store": "/etc/mlruns"}}},
        {"logger": {"tensorboard": {"save_dir": "/etc"}}},
        {"logger": {"tensorboard": {"save_dir": "outputs", "name": "../../../etc"}}},
        {"logger": {"csv": {"name": ".."}}},
        {"logger": {"mlflow": {"tracking_uri": "file:///etc/mlruns"}}},
        {"callbacks": {"best": {"dirpath": "outputs/a", "filename": "../../../../etc/x"}}},
    ):
        with pytest.raises(guard.GuardError):
            guard.check_outputs(config, root, tmp_path)


def test_process_counts_are_bounded() -> None:
    """A count typed in the form forks that many processes: workers and ranks are bounded."""
    limit = guard.process_limit()
    ok = {"dataloaders": {"train": {"num_workers": 0}, "val": {"num_workers": limit}}}
    guard.check_process_counts({**ok, "dist": {"nproc_per_node": 1}})
    for config in (
        {"dataloaders": {"train": {"num_workers": 100000}}},
        {"dataloaders": {"test": {"num_workers": -1}}},
        {"dataloaders": {"train": {"num_workers": 1e9}}},
        {"dataloaders": {"train": {"num_workers": True}}},
        {"dist": {"nproc_per_node": 0}},
        {"dist": {"nproc_per_node": limit + 1}},
    ):
        with pytest.raises(guard.GuardError, match="a whole number from"):
            guard.check_process_counts(config)


def test_the_form_refuses_a_fork_bomb_before_anything_starts(tmp_path: Path) -> None:
    tree = ConfigTree(REAL_CONFIGS, tmp_path)
    with pytest.raises(OverrideError, match=r"dataloaders.train.num_workers=100000"):
        tree.compose(["dataloaders.train.num_workers=100000"])
    with pytest.raises(OverrideError, match=r"dataloaders.val.num_workers"):
        tree.compose(["dataloaders.val.num_workers=1e9"])


# -- fuzz ------------------------------------------------------------------------------------

_TREE = ConfigTree(REAL_CONFIGS, Path.cwd())
_GROUPS = {g: _TREE.options(g) for g in _TREE.groups()}


def _base() -> Any:
    with __import__("ocrtrain.web.hydra_form", fromlist=["_lock"])._lock:
        return _TREE._compose([], with_hydra=False)


_BASE = _base()
_LEAVES = leaves(OmegaConf.to_container(_BASE, resolve=False))

KEYS = st.one_of(
    st.sampled_from(sorted(_LEAVES)),
    st.sampled_from(sorted(_GROUPS)),
    st.sampled_from(
        [
            "model._target_",
            "callbacks.w._target_",
            "callbacks.checkpoint._target_",
            "trainer._args_",
            "model._partial_",
            "data._recursive_",
            "model._convert_",
            "hydra.run.dir",
            "hydra",
            "hydra/launcher",
            "model/x",
            "new_key",
            "model.net",
            "callbacks",
            "callbacks.signals",
            "trainer.plugins",
            "trainer.strategy",
        ]
    ),
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}(\.[a-z_][a-z0-9_]{0,6}){0,3}", fullmatch=True),
)
NASTY = [
    "os.system",
    "{_target_:os.system}",
    "{_target_:pathlib.Path.write_bytes,self:/tmp/x}",
    "[{_target_:os.system}]",
    "${oc.env:HOME}",
    "'${oc.env:HOME}'",
    "\\${oc.env:HOME}",
    "${oc.decode:'{_target_: os.system}'}",
    "str(${oc.env:HOME})",
    "'$'{oc.env:HOME}",
    "${now:%Y}",
    "${paths.outputs_root}",
    "choice(1,2)",
    "range(1,3)",
    "glob(*)",
    "[1,${oc.env:HOME}]",
    "null",
    "crnn",
    "smoke",
    "long",
    "/tmp/x",
    "../x",
    "inf",
    "nan",
]
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.booleans().map(lambda b: str(b).lower()),
    st.text("abcxyz_./${}:'\"[], ", max_size=20),
    st.lists(st.integers(0, 9).map(str), max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
)
# Known keys with their own default (or any option of a group): what a form sends.
PLAIN = st.one_of(
    st.sampled_from(sorted(_LEAVES)).map(lambda k: f"{k}={format_value(_LEAVES[k])}"),
    st.sampled_from(sorted(_GROUPS)).flatmap(
        lambda g: st.sampled_from(_GROUPS[g]).map(lambda o: f"{g}={o}")
    ),
)
OVERRIDE = st.one_of(
    PLAIN,
    st.builds(lambda p, k, v: f"{p}{k}={v}", st.sampled_from(["", "+", "++", "~"]), KEYS, VALUES),
    st.builds(lambda k: f"~{k}", KEYS),
    st.text(max_size=40),
)


def _guard(overrides: list[str]) -> bool:
    """What `ConfigTree.compose` checks before composing: True when all are accepted."""
    try:
        parsed = guard.parse(check_syntax(overrides))
        guard.check_overrides(parsed, _GROUPS, _LEAVES)
    except ValueError:  # OverrideError and GuardError
        return False
    return True


def _code_and_interpolations(cfg: Any) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    flat = leaves(OmegaConf.to_container(cfg, resolve=False))
    code = {k: v for k, v in flat.items() if any(p.startswith("_") for p in k.split("."))}
    interp = {k: v for k, v in flat.items() if isinstance(v, str) and "${" in v}
    return code, interp, set(flat)


_BEFORE = _code_and_interpolations(_BASE)


@pytest.mark.slow
@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_fuzz_no_accepted_override_reaches_code(overrides: list[str]) -> None:
    accepted = _guard(overrides)
    event("accepted" if accepted else "refused")
    if not accepted:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create(OmegaConf.to_container(_BASE, resolve=False))
    for ov in OverridesParser.create().parse_overrides(overrides):
        key = ov.key_or_group
        assert not key.startswith("hydra") and ov.package is None, ov.input_line
        if key in _GROUPS:
            value = None if ov.is_delete() else ov.value()
            assert value is None or value in _GROUPS[key], ov.input_line  # a file in configs/
            continue
        if ov.is_delete():
            parent, _, last = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if node is not None and last in node:  # else Hydra refuses it when composing
                del node[last]
        else:
            OmegaConf.update(cfg, key, ov.value(), merge=True, force_add=True)
    code, interp, keys = _code_and_interpolations(cfg)
    assert code == _BEFORE[0], f"{overrides} changed what gets instantiated"
    assert set(interp.items()) <= set(_BEFORE[1].items()), f"{overrides} added an interpolation"
    assert keys <= _BEFORE[2], f"{overrides} added keys {keys - _BEFORE[2]}"
