"""The command builder's server side: turn the Hydra config tree into a form schema, and accept
only overrides that compose, so that a bad value is refused before a run exists.

Hydra's `GlobalHydra` is process-global: every compose here runs under one lock.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtrain.config_choices import CHOICES, choice_problem
from ocrtrain.hydra_checks import is_hydra_setting, leaves, one_line, type_mismatch
from ocrtrain.web import override_guard as guard
from ocrtrain.web.config_help import config_help

log = logging.getLogger(__name__)

CONFIG_NAME = "train"
# Groups whose options are shown as selects; presets are groups that default to nothing.
FORM_GROUPS = ("model", "data", "trainer", "callbacks", "logger", "dataloaders")
PRESET_GROUPS = ("debug", "experiment")
MAX_FIELD_DEPTH = 2  # fields down to group.a.b; deeper keys are still accepted as overrides
MAX_OVERRIDES = 100
MAX_OVERRIDE_LEN = 1000
DEFAULT_OUTPUTS = "outputs"  # a config without `paths.outputs_root` writes under cwd/outputs
# key=value, +key=value, ++key=value, ~key(=value) or group=option; keys are dotted identifiers
# (group paths may contain '/' and '@pkg'). Anything else (flags such as --multirun,
# whitespace-only, control characters) is refused before Hydra sees it.
_KEY = r"[A-Za-z_][A-Za-z0-9_\-]*([./@][A-Za-z0-9_\-]+)*"
_OVERRIDE_RE = re.compile(rf"^(\+\+|\+|~)?{_KEY}=[^\x00-\x1f]*$")
_DELETE_RE = re.compile(rf"^~{_KEY}$")
_SIMPLE_VALUE = re.compile(r"^[A-Za-z0-9_.\-/:@%+]*$")

_lock = threading.Lock()


class OverrideError(ValueError):
    """Overrides that do not compose; the message is one line meant for the form."""


@dataclass(frozen=True)
class Composed:
    """A successful composition: the overrides as given and the resolved config."""

    overrides: list[str]
    config: dict[str, Any]


def check_syntax(overrides: Sequence[str]) -> list[str]:
    """Refuse anything that is not a plain Hydra override (no flags, no hydra.* keys).

    Raises:
        OverrideError: the first bad override, named.
    """
    if len(overrides) > MAX_OVERRIDES:
        raise OverrideError(f"too many overrides ({len(overrides)} > {MAX_OVERRIDES})")
    out: list[str] = []
    for ov in overrides:
        if not isinstance(ov, str):
            raise OverrideError(f"override {ov!r} is not a string")
        if len(ov) > MAX_OVERRIDE_LEN:
            raise OverrideError(f"override {ov[:40]!r}... is longer than {MAX_OVERRIDE_LEN}")
        if not (_OVERRIDE_RE.match(ov) or _DELETE_RE.match(ov)):
            raise OverrideError(
                f"{ov!r} is not an override: use key=value, +key=value or group=option"
            )
        if is_hydra_setting(ov):
            raise OverrideError(f"{ov!r}: Hydra's own settings cannot be changed from the UI")
        out.append(ov)
    return out


def format_value(value: Any) -> str:
    """A form value as Hydra override text (strings quoted when the grammar needs it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if text and _SIMPLE_VALUE.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command_text(argv: Sequence[str]) -> str:
    """The argv as a copyable POSIX shell line (display only: launches never use a shell)."""
    return shlex.join(argv)


def _register_resolvers() -> None:
    """The trainer's custom resolvers (`${ocr.cpus:}`), when the trainer package is present."""
    try:
        from ocrtrain.train.config import register_resolvers
    except ImportError:
        return
    register_resolvers()


class ConfigTree:
    """One Hydra config folder (`train.yaml` plus group folders), and the runs it composes for.

    Args:
        config_dir: the folder holding `train.yaml`.
        run_cwd: the working directory of launched runs (relative output paths start there).
        checkpoint_dirs: the checkpoint folders of known runs (what `resume=PATH` may name).
    """

    def __init__(
        self,
        config_dir: Path,
        run_cwd: Path,
        checkpoint_dirs: Callable[[], Iterable[Path]] = tuple,
    ) -> None:
        self.config_dir = config_dir.resolve()
        self.run_cwd = run_cwd.resolve()
        self.checkpoint_dirs = checkpoint_dirs

    @property
    def exists(self) -> bool:
        return (self.config_dir / f"{CONFIG_NAME}.yaml").is_file()

    def groups(self) -> list[str]:
        return sorted(
            p.name
            for p in self.config_dir.iterdir()
            if p.is_dir() and any(p.glob("*.yaml")) and not p.name.startswith(("_", "."))
        )

    def options(self, group: str) -> list[str]:
        return sorted(p.stem for p in (self.config_dir / group).glob("*.yaml"))

    def _compose(self, overrides: list[str], with_hydra: bool) -> Any:
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(self.config_dir), version_base=None):
                return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)
        finally:
            GlobalHydra.instance().clear()

    def compose(self, overrides: Sequence[str]) -> Composed:
        """Compose (and resolve) `train.yaml` with `overrides`, as the trainer will, after
        checking that they are data the UI accepts (`override_guard`).

        Raises:
            OverrideError: bad syntax, code or Hydra settings, unknown key or option, wrong
                type, interpolation, output outside the outputs root, unknown checkpoint.
        """
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        ovs = check_syntax(overrides)
        groups = {g: self.options(g) for g in self.groups()}
        try:
            parsed = guard.parse(ovs)
        except guard.GuardError as exc:
            raise OverrideError(str(exc)) from None
        choices = [o.text for o in parsed if o.key in groups]
        with _lock:
            _register_resolvers()
            try:
                base = self._compose(choices, with_hydra=False)
                plain = OmegaConf.to_container(base, resolve=False)
                guard.check_overrides(parsed, groups, leaves(plain))
                root = OmegaConf.select(base, "paths.outputs_root", default=DEFAULT_OUTPUTS)
                cfg = self._compose(ovs, with_hydra=False)
                self._check_types(base, cfg, ovs, set(groups))
                OmegaConf.resolve(cfg)
                data = OmegaConf.to_container(cfg, resolve=False)
            except guard.GuardError as exc:
                raise OverrideError(str(exc)) from None
            except (HydraException, OmegaConfBaseException, ValueError) as exc:
                raise OverrideError(one_line(exc)) from exc
        if not isinstance(data, dict):  # pragma: no cover - train.yaml is a mapping
            raise OverrideError("the composed config is not a mapping")
        config = {str(k): v for k, v in data.items()}
        try:
            guard.check_outputs(config, self.run_cwd / str(root), self.run_cwd)
            guard.check_resume(config, self.run_cwd, self.checkpoint_dirs)
            guard.check_process_counts(config)
        except guard.GuardError as exc:
            raise OverrideError(str(exc)) from None
        problem = choice_problem(config)
        if problem:
            raise OverrideError(problem)
        return Composed(ovs, config)

    @staticmethod
    def _check_types(base: Any, cfg: Any, overrides: list[str], groups: set[str]) -> None:
        """An overridden value keeps the type of its default (an int stays an int)."""
        problem = type_mismatch(base, cfg, overrides, groups)
        if problem:
            raise OverrideError(problem)

    def schema(self, choices: Sequence[str] = ()) -> dict[str, Any]:
        """The form: group selects (with the default choice), presets, and typed fields of
        the config as composed with the given group `choices` (e.g. `["debug=smoke"]`).

        Raises:
            OverrideError: a choice does not compose.
        """
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        ovs = check_syntax(choices)
        groups = self.groups()
        with _lock:
            _register_resolvers()
            try:
                cfg = self._compose(ovs, with_hydra=True)
                runtime = OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False)
                data = OmegaConf.to_container(cfg, resolve=False)
            except (HydraException, OmegaConfBaseException) as exc:
                raise OverrideError(one_line(exc)) from exc
        chosen = runtime if isinstance(runtime, dict) else {}
        assert isinstance(data, dict)
        data.pop("hydra", None)
        out_groups = []
        for g in groups:
            choice = chosen.get(g)
            out_groups.append(
                {
                    "name": g,
                    "options": self.options(g),
                    "default": None if choice in (None, "null") else str(choice),
                    "preset": g in PRESET_GROUPS,
                }
            )
        sections: list[dict[str, Any]] = []
        top = [
            _field(str(k), v)
            for k, v in data.items()
            if not isinstance(v, dict | list) and not str(k).startswith("_")
        ]
        if top:
            sections.append({"name": "general", "fields": top})
        for g in FORM_GROUPS:
            node = data.get(g)
            if isinstance(node, dict):
                sections.append({"name": g, "fields": _fields(node, g)})
        picked = {str(k): None if v is None else str(v) for k, v in chosen.items()}
        describe_fields(sections, cfg, config_help(self.config_dir, picked))
        return {"config_dir": str(self.config_dir), "groups": out_groups, "sections": sections}


def describe_fields(sections: list[dict[str, Any]], cfg: Any, help_: dict[str, str]) -> None:
    """Add to each field its help (the config's comments, else its parent key's), the value
    an interpolation (`${...}`) resolves to now, and its choices where the set is closed."""
    from omegaconf import OmegaConf

    for sec in sections:
        for f in sec["fields"]:
            key = f["key"]
            parent = key.rpartition(".")[0]
            f["help"] = help_.get(key) or help_.get(parent)
            if key in CHOICES:
                f["choices"] = list(CHOICES[key])
            if isinstance(f["default"], str) and "${" in f["default"]:
                try:
                    value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
                except Exception:  # a resolver that needs a running job (hydra:...)
                    value = None
                if value is not None and not OmegaConf.is_config(value):
                    f["resolved"] = format_value(value)


def _fields(node: dict[str, Any], prefix: str, depth: int = 1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, v in node.items():
        key = f"{prefix}.{k}"
        if str(k).startswith("_"):
            continue
        if isinstance(v, dict):
            if depth >= MAX_FIELD_DEPTH:  # lookup tables (degrade presets) are not form material
                continue
            out.extend(_fields(v, key, depth + 1))
        else:
            out.append(_field(key, v))
    return out


def _field(key: str, value: Any) -> dict[str, Any]:
    """One typed input; interpolations and lists are text inputs holding override syntax."""
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, list):
        kind = "list"
        value = "[" + ",".join(format_value(x) for x in value) + "]"
    elif value is None:
        kind = "null"
    else:
        kind = "str"
    return {"key": str(key), "type": kind, "default": value}
