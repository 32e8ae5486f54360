"""Every config group composes and instantiates; config mistakes are one clear ConfigError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ocrtrain.train.config import GROUPS, compose, config_dir
from ocrtrain.train.data.export import write_synth_folder
from ocrtrain.train.errors import ConfigError
from ocrtrain.train.loggers import build_loggers
from ocrtrain.train.precision import CACHE_NAME, StepTimes, cpu_precision, resolve
from ocrtrain.train.train import build

GROUP_OPTIONS = [
    (group, p.stem) for group in GROUPS for p in sorted((config_dir() / group).glob("*.yaml"))
]


@pytest.fixture(scope="module")
def precision_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `cpu-precision.json` for the module: `auto` is measured once, not per case."""
    return tmp_path_factory.mktemp("precision-home")


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_instantiates(
    group: str, option: str, tmp_path: Path, precision_home: Path
) -> None:
    extra = []
    if (group, option) == ("data", "folder"):  # a labels.tsv folder is its one required key
        lines = tmp_path.parent / f"{tmp_path.name}-lines"
        write_synth_folder(lines, 4, ["pillow"], seed=0)
        extra = [f"data.path={lines}"]
    cfg = compose([f"{group}={option}", f"paths.outputs_root={tmp_path}", *extra])
    if group == "trainer" and cfg.trainer.accelerator == "gpu":
        pytest.skip("needs a GPU to instantiate")
    dm = instantiate(cfg.data, loaders=OmegaConf.to_container(cfg.dataloaders), _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    assert model.charset.num_classes == dm.charset.num_classes == 96
    callbacks = [instantiate(c, _convert_="all") for c in cfg.callbacks.values()]
    # `auto` is the trainer's to resolve (measured on this CPU) before Lightning sees it.
    precision = resolve(str(cfg.trainer.precision), precision_home)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, precision=precision)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    for split in ("train", "val", "test"):
        assert split in dm.datasets
    assert not any(tmp_path.iterdir())  # composing and building writes nothing
    # Loggers are built last (MLflow's creates its store folder).
    trainer.loggers = build_loggers(cfg.get("logger"), build)
    assert len(trainer.loggers) == len(cfg.get("logger") or {})


def test_dataloader_defaults_keep_workers_and_use_the_cores() -> None:
    cfg = compose([])
    for split in ("train", "val", "test", "predict"):
        section = cfg.dataloaders[split]
        assert {"num_workers", "persistent_workers", "pin_memory", "prefetch_factor"} <= set(
            section
        )
    assert cfg.dataloaders.train.persistent_workers is True
    assert cfg.dataloaders.train.num_workers >= 1


def test_overrides_apply_on_top_of_debug_smoke() -> None:
    cfg = compose(["debug=smoke", "trainer.max_epochs=50"])
    assert cfg.trainer.max_epochs == 50
    assert cfg.model.net.hidden == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.no_such_key=1"], "no_such_key"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs: expected int"),
        (["data.batch_size=1.5"], "data.batch_size: expected int"),
        (["dataloaders.train.persistent_workers=3"], "expected bool"),
        (["debug=nope"], "nope"),
        (["logger=null"], "write ~logger to leave the group out"),
        (["hydra.run.dir=/tmp/x"], "hydra.* settings do not apply"),
    ],
)
def test_config_mistakes_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        compose(overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=0"], "data.batch_size must be at least 1, not 0"),
        (["data.train.batches_per_epoch=0"], "data.train.batches_per_epoch must be at least 1"),
        (["data.test.size=0"], "data.test.size must be at least 1"),
        (["data.max_width=4"], "data.max_width must be at least 8"),
        (["data.width_scale=0"], "data.width_scale must be above 0"),
        (["dataloaders.train.num_workers=-1"], "dataloaders.train.num_workers must be at least 0"),
        (["dataloaders.val.prefetch_factor=0"], "dataloaders.val.prefetch_factor must be at"),
        (["model.lr=-0.1"], "model.lr must be above 0"),
        (["model.pct_start=1"], "model.pct_start must be between 0 and 1"),
        (["model.scheduler=cosine"], "model.scheduler must be one of onecycle, constant"),
        (["model.optimizer=sgd"], "model.optimizer must be one of adamw, muon"),
        (["model.muon_lr=0"], "model.muon_lr must be above 0"),
        (["+data.train.cache=true"], "data.train.cache must be false"),
    ],
)
def test_values_out_of_range_are_refused_when_built(overrides: list[str], message: str) -> None:
    """Caught while data and model are built, i.e. before a run writes anything."""
    cfg = compose(["debug=smoke", *overrides])
    with pytest.raises(ConfigError, match=message) as info:
        build(cfg.data, loaders=OmegaConf.to_container(cfg.dataloaders))
        build(cfg.model)
    assert "\n" not in str(info.value)


def test_float_keys_accept_ints() -> None:
    assert compose(["model.lr=1"]).model.lr == 1


def test_auto_precision_is_float32_without_bf16_and_measured_once_with_it(tmp_path: Path) -> None:
    info, home = tmp_path / "cpuinfo", tmp_path / "home"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_precision(info, home) == "32-true"
    assert not (home / CACHE_NAME).exists()  # no bfloat16 flag: nothing to measure
    assert cpu_precision(tmp_path / "missing", home) == "32-true"

    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx512f avx512_bf16\n")
    first = cpu_precision(info, home)
    assert first in ("bf16-mixed", "32-true")
    cache = json.loads((home / CACHE_NAME).read_text())
    ((key, entry),) = cache.items()
    assert key.startswith("Test CPU | flags ") and " | torch " in key
    assert entry["precision"] == first and entry["fp32_ms"] > 0 and entry["bf16_ms"] > 0
    # Later runs read the kept answer instead of measuring again.
    entry["precision"] = "32-true" if first == "bf16-mixed" else "bf16-mixed"
    (home / CACHE_NAME).write_text(json.dumps(cache))
    assert cpu_precision(info, home) == entry["precision"]
    assert compose([]).trainer.precision == "auto"


def test_bfloat16_is_chosen_only_when_clearly_faster() -> None:
    assert StepTimes(fp32_ms=100.0, bf16_ms=60.0).choice == "bf16-mixed"
    assert StepTimes(fp32_ms=100.0, bf16_ms=95.0).choice == "32-true"
    assert StepTimes(fp32_ms=100.0, bf16_ms=140.0).choice == "32-true"


def test_no_held_out_family_or_clone_is_trained_on() -> None:
    data = compose([]).data
    held_out = ("DejaVuSerif", "LiberationSerif", "LiberationMono")
    clones = ("NimbusRoman", "FreeSerif", "texgyretermes", "Tinos", "Cousine")
    assert [f for f in data.test_fonts if not f.startswith(held_out)] == []
    for font in data.train_fonts:
        assert not font.startswith(held_out + clones), font
