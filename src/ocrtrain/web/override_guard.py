"""What a caller of the web UI may put on the trainer's command line: data, never code.

Hydra overrides can name classes (`_target_`), call resolvers (`${oc.env:...}`), add keys the
trainer instantiates (`+callbacks.x._target_=...`) and point outputs anywhere. The terminal
keeps all of that (its user already has a shell); the UI accepts only what its form offers:
an option of a config group found in `configs/`, or a new value, of the same type, for a key
the composed config already has. Written paths stay under the outputs root, and `resume` is
`auto` or a checkpoint of a run this journal knows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtrain.hydra_checks import folder_name_problem, is_hydra_setting, type_ok
from ocrtrain.train.config import usable_cpus

# Written paths: every leaf of `paths`, and these leaves of any callback.
OUTPUT_KEYS = ("dirpath", "path")
RESUME_KEY = "resume"
RESUME_WORDS = frozenset({"auto"})


class GuardError(ValueError):
    """An override the UI does not accept; the message is one line naming it."""


@dataclass(frozen=True)
class Override:
    """One parsed override: `kind` is '', '+', '++' or '~'."""

    text: str
    kind: str
    key: str
    value: Any


def parse(overrides: Sequence[str]) -> list[Override]:
    """Parse with Hydra's own grammar, refusing sweeps and package (`@`) overrides.

    Raises:
        GuardError: an override Hydra cannot parse, a sweep, or a package override.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    kinds = {OverrideType.CHANGE: "", OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++"}
    out: list[Override] = []
    for text in overrides:
        try:
            ov = parser.parse_override(text)
        except HydraException as exc:
            raise GuardError(f"{text!r}: {' '.join(str(exc).split())[:200]}") from None
        if ov.is_sweep_override():
            raise GuardError(f"{text!r}: sweeps (several runs at once) are not launched here")
        if ov.package is not None:
            raise GuardError(f"{text!r}: package overrides ('@') are not accepted here")
        kind = kinds.get(ov.type, "~")
        out.append(Override(text, kind, ov.key_or_group, None if kind == "~" else ov.value()))
    return out


def _code_part(key: str) -> str | None:
    """The part of a key that steers instantiation (`_target_`, `_args_`, `_partial_`, ...)."""
    return next((p for p in key.replace("/", ".").split(".") if p.startswith("_")), None)


def _interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value.replace("\\", "")
    if isinstance(value, list | tuple):
        return any(_interpolation(v) for v in value)
    if isinstance(value, dict):
        return any(_interpolation(k) or _interpolation(v) for k, v in value.items())
    return False


def _primitive(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _list_problem(value: Any) -> str | None:
    """Why `value` cannot replace a list default (None: it can)."""
    if not isinstance(value, list):
        return f"expected a list like [1,2], got {value!r}"
    bad = next((v for v in value if not _primitive(v)), None)
    return None if bad is None and value else f"list items must be plain values: {value!r}"


def _value_problem(default: Any, value: Any) -> str | None:
    """Why `value` cannot replace `default` (None: it can)."""
    if isinstance(value, dict):
        return "mappings are not accepted here"
    if isinstance(default, list):
        return _list_problem(value)
    if isinstance(value, list):
        return f"expected a single value, got a list {value!r}"
    if not _primitive(value):
        return f"{value!r} is not a finite number"
    if value is not None and default is not None and not type_ok(default, value):
        return f"expected {type(default).__name__}, got {value!r} ({type(value).__name__})"
    return None


def check_overrides(
    parsed: Iterable[Override], groups: Mapping[str, Sequence[str]], leaves: Mapping[str, Any]
) -> None:
    """Refuse anything beyond choosing group options and retyping-free values of known keys.

    Args:
        parsed: the overrides, from `parse`.
        groups: each config group of `configs/` and its options.
        leaves: `{"a.b.c": default}` of the config composed with the group choices alone.

    Raises:
        GuardError: the first override that is not plain data for a known key, named.
    """
    for ov in parsed:
        key = ov.key
        code = _code_part(key)
        if code is not None:
            raise GuardError(f"{ov.text!r}: {code} keys choose code; the UI changes values only")
        if is_hydra_setting(key):
            raise GuardError(f"{ov.text!r}: Hydra's own settings cannot be changed from the UI")
        if _interpolation(ov.value) or "${" in ov.text.replace("\\", ""):
            raise GuardError(f"{ov.text!r}: interpolations ('${{...}}') are not accepted here")
        if key in groups:
            options = groups[key]
            if ov.kind == "~":
                continue  # back to no option (presets default to none)
            if not isinstance(ov.value, str) or ov.value not in options:
                raise GuardError(
                    f"{ov.text!r}: {key} must be one of {', '.join(options)} (from configs/)"
                )
            continue
        if "/" in key:
            raise GuardError(f"{ov.text!r}: unknown config group {key!r}")
        if key not in leaves:
            raise GuardError(
                f"{ov.text!r}: the config has no key {key!r}; the UI changes the values of "
                "existing keys only"
            )
        if ov.kind == "+":
            raise GuardError(f"{ov.text!r}: {key} exists; set it without '+'")
        if ov.kind == "~":
            continue
        problem = _value_problem(leaves[key], ov.value)
        if problem:
            raise GuardError(f"{key}: {problem}")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


WRITER_SECTIONS = ("callbacks", "logger")  # objects that write files wherever they are told
# Keys whose value is a folder or file a callback or logger writes (relative: from the run's cwd).
PATH_KEYS = frozenset(
    {*OUTPUT_KEYS, "save_dir", "store", "root_dir", "log_dir", "logdir", "tracking_uri", "dir"}
)


def _escapes(value: str) -> bool:
    """Whether a name used inside a writer's folder (a logger's `name`, a checkpoint's
    `filename`) could point elsewhere: absolute, home-relative, a URI, or through `..`."""
    return value.startswith(("/", "~", "file:")) or ".." in Path(value).parts


def _writer_paths(prefix: str, tree: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k != "_target_":  # a class name, refused as an override anyway
                out += _writer_paths(f"{prefix}.{k}", v)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _writer_paths(f"{prefix}[{i}]", v)
    elif isinstance(tree, str):
        key = prefix.rsplit(".", 1)[-1]
        if key in PATH_KEYS or _escapes(tree):
            out.append((prefix, tree))
    return out


def output_paths(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, path) of what the run writes: `paths.*`, and every path-like string of the
    callbacks and loggers (a logger's `save_dir`, `store` or `name=../x` writes there too)."""
    out: list[tuple[str, str]] = []
    paths = config.get("paths")
    if isinstance(paths, dict):
        out += [(f"paths.{k}", v) for k, v in paths.items() if isinstance(v, str)]
    for section in WRITER_SECTIONS:
        out += _writer_paths(section, config.get(section))
    return out


def check_outputs(config: Mapping[str, Any], root: Path, cwd: Path) -> None:
    """Every written path of the resolved `config`, relative ones taken from `cwd`, lies in
    `root`; `experiment_name` names one folder.

    Raises:
        GuardError: the first path outside `root`, or a name with '/' or '..'.
    """
    problem = folder_name_problem("experiment_name", config.get("experiment_name", ""))
    if problem:
        raise GuardError(problem)
    root = root.resolve()
    for key, value in output_paths(config):
        local = value.removeprefix("file://").removeprefix("file:")
        path = (cwd / Path(local).expanduser()).resolve()
        if not _inside(path, root):
            raise GuardError(f"{key}={value}: outside the outputs root {root}")


def process_limit() -> int:
    """The most processes of one kind (a loader's workers, a node's ranks) a UI run may ask
    for: four per core this server may use, and at least 16."""
    return max(16, 4 * usable_cpus())


def check_process_counts(config: Mapping[str, Any]) -> None:
    """Each DataLoader's `num_workers` and `dist.nproc_per_node` of the resolved `config` is
    a whole number from 0 (1 for ranks) to `process_limit()`: a number typed in a form must
    not fork a process per unit of it.

    Raises:
        GuardError: the first count out of range, named.
    """
    limit = process_limit()
    counts: list[tuple[str, Any, int]] = []
    loaders = config.get("dataloaders")
    if isinstance(loaders, dict):
        for split, opts in loaders.items():
            if isinstance(opts, dict) and "num_workers" in opts:
                counts.append((f"dataloaders.{split}.num_workers", opts["num_workers"], 0))
    dist = config.get("dist")
    if isinstance(dist, dict) and "nproc_per_node" in dist:
        counts.append(("dist.nproc_per_node", dist["nproc_per_node"], 1))
    for key, value, low in counts:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
            raise GuardError(
                f"{key}={value!r}: a whole number from {low} to {limit} (4 per core) here"
            )


def check_resume(config: Mapping[str, Any], cwd: Path, known: Callable[[], Iterable[Path]]) -> None:
    """`resume` is unset, `auto`, or a checkpoint file in a folder a known run wrote.

    Args:
        config: the resolved config.
        cwd: the run's working directory (relative paths start there).
        known: the checkpoint folders of the journal's runs.

    Raises:
        GuardError: any other resume value.
    """
    value = config.get(RESUME_KEY)
    if value in (None, False, "", "null", "none") or value in RESUME_WORDS:
        return
    path = (cwd / Path(str(value)).expanduser()).resolve()
    folders = [Path(f).resolve() for f in known()]
    if path.suffix == ".ckpt" and path.is_file() and any(path.parent == f for f in folders):
        return
    raise GuardError(
        f"resume={value}: not a checkpoint of a run this UI knows; use resume=auto or a "
        "checkpoint listed with a finished run"
    )
