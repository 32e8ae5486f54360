"""Compose the training config with Hydra's compose API and turn every config mistake into
one `ConfigError` line (exit 2) instead of a Hydra traceback.

The config tree ships inside the package (`ocrtrain/configs`, a link to the checkout's
`configs/` that a wheel carries as package data), so an installed `ocrtrain train` runs from
any folder. `OCRTRAIN_CONFIG_DIR` points elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocrtrain.hydra_checks import is_hydra_setting, one_line, type_mismatch
from ocrtrain.procman import CONFIG_DIR_ENV
from ocrtrain.train.errors import ConfigError

CONFIG_NAME = "train"
PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Groups whose choice is itself an override (`debug=smoke`), not a value to type-check.
GROUPS = (
    "data",
    "model",
    "trainer",
    "dataloaders",
    "callbacks",
    "logger",
    "paths",
    "debug",
    "experiment",
)


def config_dir() -> Path:
    """The folder holding `train.yaml` and its groups."""
    env = os.environ.get(CONFIG_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(PACKAGE_CONFIGS)
    for cand in candidates:
        if (cand / f"{CONFIG_NAME}.yaml").is_file():
            return cand
    raise ConfigError(
        f"no {CONFIG_NAME}.yaml found in {', '.join(map(str, candidates))}; "
        f"set {CONFIG_DIR_ENV} to a folder holding {CONFIG_NAME}.yaml and its groups"
    )


def usable_cpus() -> int:
    """The cores this process may run on (its affinity), as `${ocr.cpus:}` counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def register_resolvers() -> None:
    """`${ocr.cpus:}`: the cores this process may use; `${ocr.cpus_minus:1}` leaves some."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("ocr.cpus", usable_cpus, replace=True)
    OmegaConf.register_new_resolver(
        "ocr.cpus_minus", lambda n: max(1, usable_cpus() - int(n)), replace=True
    )


def _check_types(base: Any, cfg: Any, overrides: Sequence[str]) -> None:
    """Each overridden key keeps the type of its default (int, float, bool)."""
    problem = type_mismatch(base, cfg, overrides, GROUPS)
    if problem:
        raise ConfigError(problem)


def _refuse_hydra_settings(overrides: Sequence[str]) -> None:
    """Hydra's own settings would be ignored (ocrtrain composes the config itself, under the
    supervisor): refuse them instead."""
    for o in overrides:
        if is_hydra_setting(o):
            raise ConfigError(
                f"{o.split('=', 1)[0]}: hydra.* settings do not apply to ocrtrain runs; outputs "
                "go under paths.outputs_root (paths.output_dir per run, paths.ckpt_dir per "
                "experiment)"
            )


def _refuse_null_groups(overrides: Sequence[str]) -> None:
    """`logger=null` for a group with a default is no override Hydra takes (it raises a bare
    ValueError): say what does."""
    for o in overrides:
        key, _, value = o.partition("=")
        if key in GROUPS and value.strip().lower() in ("null", "none", "~"):
            raise ConfigError(
                f"{o}: choose one of {key}/'s configs, or write ~{key} to leave the group out"
            )


def compose(overrides: Sequence[str] = ()) -> Any:
    """The resolved config (`DictConfig`) of `train.yaml` with the given overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    overrides = list(overrides)
    _refuse_hydra_settings(overrides)
    _refuse_null_groups(overrides)
    group_choices = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides)
            base = hydra_compose(CONFIG_NAME, overrides=group_choices)
        _check_types(base, cfg, overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg
