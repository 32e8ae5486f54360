"""Synthetic receipt lines as a dataset: sample i of seed s is always the same image.

Rendering happens in `__getitem__`, i.e. in the DataLoader workers (real CPU work). The
training set is unbounded: `EpochSampler` hands out fresh index ranges every epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec

from PIL import Image
from torch.utils.data import Dataset, Sampler

from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.render import Degrade, LinePlan, paint, plan_line
from ocrtrain.train.data.text import TEXT_MIXES, label_of, receipt_line
from ocrtrain.train.data.transforms import Sample, to_tensor

UNBOUNDED = 2**62
P = ParamSpec("P")


def synth_text(
    index: int, seed: int, charset: Charset, max_chars: int, mix: str = "receipts"
) -> tuple[str, random.Random]:
    """The text of sample `index` under `seed` (kinds of lines: `text.TEXT_MIXES[mix]`), and
    the RNG to render it with."""
    rng = random.Random(f"{seed}:{index}")
    text = receipt_line(rng, max_chars, mix)
    for _ in range(20):  # a restricted charset: draw again, then drop what it cannot express
        if not charset.unknown(text):
            break
        text = receipt_line(rng, max_chars, mix)
    else:
        text = "".join(c for c in text if not charset.unknown(c)).strip() or charset.chars[0]
    return text, rng


def synth_plan(
    index: int,
    seed: int,
    fonts: Sequence[str],
    deg: Degrade | Sequence[Degrade],
    charset: Charset,
    max_chars: int,
    mix: str = "receipts",
) -> LinePlan:
    """Every random choice of sample `index` under `seed`: its text, font and degradations
    (under `deg`, or under one of several picked for the line)."""
    text, rng = synth_text(index, seed, charset, max_chars, mix)
    font = rng.choice(list(fonts))
    if not isinstance(deg, Degrade):
        deg = rng.choice(list(deg))
    return plan_line(text, font, rng, deg)


def degrades(
    spec: Degrade | Mapping[str, Any] | Sequence[Mapping[str, Any] | Degrade],
) -> Degrade | tuple[Degrade, ...]:
    """The degradation ranges of a preset, or of a list of presets that lines are drawn under
    in turn (one picked at random per line: list a preset twice to draw it twice as often)."""
    if isinstance(spec, Degrade):
        return spec
    if isinstance(spec, Mapping):
        return Degrade(**dict(spec))
    each = [d if isinstance(d, Degrade) else Degrade(**dict(d)) for d in spec]
    if not each:
        raise ValueError("an empty list of degradation presets")
    return each[0] if len(each) == 1 else tuple(each)


def _drawn(plan_of: Callable[P, LinePlan]) -> Callable[P, tuple[Image.Image, str]]:
    def draw(*args: P.args, **kwargs: P.kwargs) -> tuple[Image.Image, str]:
        plan = plan_of(*args, **kwargs)
        return paint(plan), label_of(plan.text)

    return draw


# The (image, label) pair of sample `index` under `seed` (see `text.label_of`); it takes what
# `synth_plan` takes.
synth_image = _drawn(synth_plan)


class SynthLines(Dataset[Sample]):
    """`size` synthetic lines (or unbounded when `size` is None), rendered on demand."""

    def __init__(
        self,
        charset: Charset,
        fonts: Sequence[str],
        degrade: Degrade | Mapping[str, Any] | Sequence[Mapping[str, Any] | Degrade],
        seed: int,
        size: int | None,
        height: int,
        max_width: int,
        max_chars: int = 40,
        width_scale: float = 1.0,
        short_samples: int = 0,
        short_chars: int = 16,
        text_mix: str = "receipts",
    ) -> None:
        if text_mix not in TEXT_MIXES:
            raise ValueError(f"text mix {text_mix!r} is not one of {', '.join(TEXT_MIXES)}")
        self.charset = charset
        self.fonts = list(fonts)
        self.degrade = degrades(degrade)
        self.seed = seed
        self.size = size
        self.height = height
        self.max_width = max_width
        self.max_chars = max_chars
        self.width_scale = width_scale
        # curriculum: the first `short_samples` lines are cut to `short_chars` characters
        self.short_samples = short_samples
        self.short_chars = short_chars
        self.text_mix = text_mix

    def _max_chars(self, index: int) -> int:
        return self.short_chars if index < self.short_samples else self.max_chars

    def _args(
        self, index: int
    ) -> tuple[int, int, list[str], Degrade | tuple[Degrade, ...], Charset, int, str]:
        chars = self._max_chars(index)
        return index, self.seed, self.fonts, self.degrade, self.charset, chars, self.text_mix

    def __len__(self) -> int:
        return UNBOUNDED if self.size is None else self.size

    def aspect(self, index: int) -> float:
        """Width / height of line `index`, estimated without rendering it: its width at the
        model's height, up to a factor, for batching lines of similar width."""
        return synth_plan(*self._args(index)).aspect()

    def __getitem__(self, index: int) -> Sample:
        img, text = synth_image(*self._args(index))
        tensor = to_tensor(img, self.height, self.max_width, self.width_scale)
        return tensor, text, self.charset.encode(text)


def _check_rank(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")


class EpochSampler(Sampler[int]):
    """Indices `[k*n, (k+1)*n)` with `k = epoch * world_size + rank`: new lines every epoch,
    different ones on every rank of a distributed run, the same ones on a rerun.

    Lightning calls `set_epoch` before each epoch (also after a resume), so the data seen
    depends on the epoch only, not on how often the run was interrupted. Every rank draws
    `num_samples` lines an epoch, so all ranks run the same number of steps.
    """

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        self.num_samples = num_samples
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        start = (self.epoch * self.world_size + self.rank) * self.num_samples
        return iter(range(start, start + self.num_samples))


class ShardSampler(Sampler[int]):
    """Every `world_size`-th index from `rank`, in order: a rank's share of a finite split.

    Unlike torch's DistributedSampler nothing is repeated to even out the shares, so the
    ranks' summed scores count each line once.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        self.size, self.rank, self.world_size = size, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))


class WidthBuckets(Sampler[list[int]]):
    """Batches of lines of similar width, drawn from an `EpochSampler`'s indices.

    Within each group of `bucket_batches` batches the lines are sorted by `width` (of
    synthetic lines: `SynthLines.aspect`, known before they are rendered), so a batch, padded
    to its widest line, pads far less; the batch order is then shuffled (seeded by the
    epoch). Lightning finds `self.sampler` and calls its `set_epoch`.

    Sorted by text length instead, a batch's padded width was 1.47x its lines' mean width
    (fonts and stretch differ in width per character); by the planned aspect ratio ~1.1x.
    A training step costs in proportion to the padded width.
    """

    def __init__(
        self,
        sampler: EpochSampler,
        batch_size: int,
        width: Callable[[int], float],
        bucket_batches: int = 16,
        seed: int = 0,
    ) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.width = width
        self.bucket_batches = max(1, bucket_batches)
        self.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        chunk = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for c in range(0, len(indices), chunk):
            part = sorted(indices[c : c + chunk], key=self.width)
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        random.Random(f"buckets:{self.seed}:{self.sampler.epoch}").shuffle(batches)
        return iter(batches)
