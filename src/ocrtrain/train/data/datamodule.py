"""The LightningDataModule: synthetic or `labels.tsv` splits, DataLoaders from the config.

Every worker is tied to its trainer (`workers.worker_init`) and the run is supervised, so the
loaders keep `persistent_workers` on and use the cores: no worker outlives a killed trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.folder import LabelFolder
from ocrtrain.train.data.fonts import fonts_in, pick_fonts, resolve_fonts, without_held_out
from ocrtrain.train.data.synth import (
    EpochSampler,
    ShardSampler,
    SynthLines,
    WidthBuckets,
    degrades,
)
from ocrtrain.train.data.transforms import collate
from ocrtrain.train.data.workers import record_shared_tmpdir, worker_init
from ocrtrain.train.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "predict")


def at_least(name: str, value: Any, low: float) -> None:
    """Reject a config number below `low` with a `ConfigError` naming the key."""
    if value is not None and value < low:
        raise ConfigError(f"{name} must be at least {low:g}, not {value}")


def loader_kwargs(section: Mapping[str, Any] | None, name: str = "dataloader") -> dict[str, Any]:
    """DataLoader arguments of a `dataloaders.<split>` section (`name` in errors), valid for
    any `num_workers`."""
    section = dict(section or {})
    workers = int(section.get("num_workers", 0))
    at_least(f"{name}.num_workers", workers, 0)
    at_least(f"{name}.prefetch_factor", section.get("prefetch_factor"), 1)
    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": bool(section.get("pin_memory", False)),
    }
    if workers > 0:
        kwargs["persistent_workers"] = bool(section.get("persistent_workers", True))
        kwargs["prefetch_factor"] = int(section.get("prefetch_factor") or 2)
        kwargs["worker_init_fn"] = worker_init
        record_shared_tmpdir()  # before the workers fork: they share it
    return kwargs


class KeptSamples(Dataset[Any]):
    """A finite split whose samples each process makes once and keeps (`cache: true`).

    The validation loader's persistent worker then renders (or reads) its lines at the first
    validation only; later validations are the model's forward passes alone.
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset
        self.kept: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.kept.get(index)
        if sample is None:
            sample = self.kept[index] = self.dataset[index]
        return sample


class OCRDataModule(L.LightningDataModule):
    """Builds each split from its config section (`kind: synth` or `kind: folder`)."""

    def __init__(
        self,
        charset: str | None = None,
        height: int = 32,
        max_width: int = 800,
        width_scale: float = 1.0,
        batch_size: int = 32,
        train: Mapping[str, Any] | None = None,
        val: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        predict: Mapping[str, Any] | None = None,
        loaders: Mapping[str, Any] | None = None,
        train_fonts: list[str] | None = None,
        test_fonts: list[str] | None = None,
        degrade_presets: Mapping[str, Any] | None = None,
        bucket_batches: int = 16,
        font_dirs: list[str] | None = None,
        held_out_families: list[str] | None = None,
        path: str | None = None,  # data=folder: the labels.tsv folder its splits name
    ) -> None:
        super().__init__()
        for key, value, low in (
            ("height", height, 16),
            ("max_width", max_width, 8),
            ("batch_size", batch_size, 1),
            ("bucket_batches", bucket_batches, 1),
        ):
            at_least(f"data.{key}", value, low)
        if width_scale <= 0:
            raise ConfigError(f"data.width_scale must be above 0, not {width_scale}")
        self.charset = Charset(charset)
        self.height = height
        self.max_width = max_width
        self.width_scale = width_scale
        self.batch_size = batch_size
        self.loaders = dict(loaders or {})
        for split in SPLITS:  # DataLoaders are made during fit: check their settings now
            loader_kwargs(self.loaders.get(split), f"dataloaders.{split}")
        self.train_fonts = list(train_fonts or ["pillow"])
        self.test_fonts = list(test_fonts or [])
        try:  # training fonts from folders, besides the named ones
            self.dir_fonts = fonts_in(font_dirs or [])
        except FileNotFoundError as exc:
            raise ConfigError(f"data.font_dirs: {exc}") from exc
        self.held_out_families = list(held_out_families or [])
        self.degrade_presets = dict(degrade_presets or {})  # referenced by the splits' config
        self.train_samples = 0
        self.bucket_batches = bucket_batches  # width bucketing of synthetic training batches
        specs = {"train": train, "val": val, "test": test, "predict": predict}
        self.datasets: dict[str, Dataset[Any]] = {}
        self.seeds: dict[str, int] = {}  # per split: shuffling and synthetic lines
        for split, spec in specs.items():
            if spec:
                dataset = self._build(split, dict(spec))
                if spec.get("cache"):
                    if split == "train":
                        raise ConfigError(
                            "data.train.cache must be false: the training lines are new every epoch"
                        )
                    dataset = KeptSamples(dataset)
                self.datasets[split] = dataset

    def _build(self, split: str, spec: dict[str, Any]) -> Dataset[Any]:
        kind = spec.get("kind", "synth")
        self.seeds[split] = int(spec.get("seed", 0))
        for key, low in (
            ("batches_per_epoch", 1),
            ("size", 1),
            ("max_chars", 1),
            ("short_chars", 1),
        ):
            at_least(f"data.{split}.{key}", spec.get(key), low)
        at_least(f"data.{split}.short_samples", spec.get("short_samples"), 0)
        if kind == "folder":
            if not spec.get("path"):
                raise ConfigError(f"data.{split}.path must name a labels.tsv folder")
            return LabelFolder(
                spec["path"], self.charset, self.height, self.max_width, self.width_scale
            )
        if kind != "synth":
            raise ConfigError(f"data.{split}.kind must be 'synth' or 'folder', not {kind!r}")
        names = list(spec.get("fonts") or self.train_fonts)
        if split in ("train", "val"):  # the fonts trained on: never a held-out family
            names = without_held_out(
                resolve_fonts(names) + self.dir_fonts, self.held_out_families, split
            )
        fonts = pick_fonts(names, self.train_fonts, split, self.charset.chars)
        size = spec.get("size")
        if split == "train":
            # unbounded: the sampler picks `batches_per_epoch` batches of fresh lines per epoch
            self.train_samples = int(spec.get("batches_per_epoch", 100)) * self.batch_size
            size = None
        try:
            given = spec.get("degrade")
            degrade = degrades({} if given is None else given)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.{split}.degrade: {exc}") from exc
        return SynthLines(
            self.charset,
            fonts,
            degrade,
            seed=int(spec.get("seed", 0)),
            size=None if size is None else int(size),
            height=self.height,
            max_width=self.max_width,
            max_chars=int(spec.get("max_chars", 40)),
            width_scale=self.width_scale,
            short_samples=int(spec.get("short_samples", 0)),
            short_chars=int(spec.get("short_chars", 16)),
        )

    def _rank_world(self) -> tuple[int, int]:
        """This process's rank and the number of ranks (0, 1 outside distributed training)."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[Any]:
        dataset = self.datasets.get(split)
        if dataset is None:
            raise ConfigError(f"no data.{split} split is configured")
        kwargs = loader_kwargs(self.loaders.get(split))
        rank, world = self._rank_world()
        if isinstance(dataset, SynthLines) and dataset.size is None:
            batches = WidthBuckets(
                EpochSampler(self.train_samples, rank, world),
                self.batch_size,
                dataset.aspect,
                self.bucket_batches,
                seed=dataset.seed,
            )
            return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, **kwargs)
        if world > 1:
            size = len(dataset)  # type: ignore[arg-type]
            # Training: every rank the same number of shuffled lines (a few repeated to even
            # them out, or DDP would wait on a rank that ran out). Scoring: each line once,
            # on one rank; the module sums the counts over ranks.
            share: Sampler[int] = (
                DistributedSampler(dataset, world, rank, shuffle=True, seed=self.seeds[split])
                if shuffle
                else ShardSampler(size, rank, world)
            )
            return DataLoader(
                dataset, batch_size=self.batch_size, sampler=share, collate_fn=collate, **kwargs
            )
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate, **kwargs
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader("predict")
