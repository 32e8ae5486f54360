"""Training lines that look like the world: two text engines, held-out families kept out,
fonts from folders, receipt text kinds, and enough CTC frames for runs of narrow glyphs."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import REPO
from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.datamodule import OCRDataModule
from ocrtrain.train.data.fonts import (
    BUNDLED,
    family_of,
    is_held_out,
    resolve_fonts,
)
from ocrtrain.train.data.render import Degrade, paint, plan_line, skia_available
from ocrtrain.train.data.synth import SynthLines
from ocrtrain.train.data.text import receipt_line
from ocrtrain.train.data.transforms import to_tensor
from ocrtrain.train.decoding import decode_batch
from ocrtrain.train.errors import ConfigError
from ocrtrain.train.models.crnn import CRNN

DATA_CFG = yaml.safe_load((REPO / "configs" / "data" / "synth_receipts.yaml").read_text())
MODEL_CFG = yaml.safe_load((REPO / "configs" / "model" / "crnn.yaml").read_text())
HELD_OUT = DATA_CFG["held_out_families"]
CLEAN = Degrade(**DATA_CFG["degrade_presets"]["clean"])
ENGINES = Degrade(**{**DATA_CFG["degrade_presets"]["clean"], "skia_p": 0.5, "unshaped_p": 0.5,
                     "gamma_max": 0.5, "subpixel": True, "aliased_p": 0.2})  # fmt: skip


def _installed(names: list[str]) -> list[str]:
    return [f for f in resolve_fonts(names) if f != BUNDLED]


def test_no_training_font_is_of_a_held_out_family() -> None:
    fonts = _installed(DATA_CFG["train_fonts"])
    if not fonts:
        pytest.skip("no training font is installed (make fonts)")
    seen = {family_of(f) for f in fonts}
    assert not [f for f in seen if is_held_out(f, HELD_OUT)]
    assert len(seen) >= 40  # many families, so no one family's shapes stand for a letter


def test_the_unseen_engine_benchmark_draws_held_out_families_only() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from unseen_engine import HELD_OUT_FAMILIES

    assert set(HELD_OUT_FAMILIES) <= set(HELD_OUT)
    for family in DATA_CFG["test_fonts"]:
        for spec in _installed([family]):
            assert is_held_out(family_of(spec), HELD_OUT)


def test_style_families_count_as_their_family() -> None:
    assert is_held_out("Roboto Condensed", ["Roboto"])
    assert is_held_out("dejavu serif", ["DejaVu Serif"])
    assert not is_held_out("DejaVu Sans", ["DejaVu Serif"])
    assert not is_held_out("Robotomono", ["Roboto"])


def test_font_dirs_add_fonts_but_never_held_out_ones(tmp_path: Path) -> None:
    fonts = _installed(["Go-Regular.ttf", "DejaVuSerif.ttf"])
    if len(fonts) < 2:
        pytest.skip("Go and DejaVu Serif are not installed (make fonts)")
    for f in fonts:
        shutil.copy(f, tmp_path / Path(f).name)
    dm = OCRDataModule(
        train={"kind": "synth", "seed": 1, "fonts": [BUNDLED]},
        font_dirs=[str(tmp_path)],
        held_out_families=["DejaVu Serif"],
    )
    train = dm.datasets["train"]
    assert isinstance(train, SynthLines)
    assert sorted(Path(f).name for f in train.fonts) == ["Go-Regular.ttf", BUNDLED]
    with pytest.raises(ConfigError, match=r"data\.font_dirs: font folder not found"):
        OCRDataModule(train={"kind": "synth"}, font_dirs=[str(tmp_path / "nope")])


def test_lines_are_drawn_by_two_engines_with_their_settings() -> None:
    if not skia_available():
        pytest.skip("skia-python is not installed")
    fonts = _installed(["DejaVuSans.ttf", "Go-Regular.ttf"]) or [BUNDLED]
    plans = [plan_line("AV To 1.63 ....", fonts[i % len(fonts)], random.Random(i), ENGINES)
             for i in range(60)]  # fmt: skip
    assert {p.engine for p in plans} >= {"pillow"}
    if fonts != [BUNDLED]:
        assert {p.engine for p in plans} == {"pillow", "skia"}
        assert len({p.hinting for p in plans if p.engine == "skia"}) > 1
    assert any(p.unshaped for p in plans) and any(not p.antialias for p in plans)
    for p in plans[:20]:
        img = np.asarray(paint(p))
        assert img.min() < p.paper - 40  # ink was drawn
        assert abs(img.shape[1] / img.shape[0] - p.aspect()) / p.aspect() < 0.15  # batching


def test_scoring_presets_draw_as_before() -> None:
    """Engine variety is drawn only where a preset asks for it: the default and held-out
    presets keep Pillow's lines, image for image, so their figures stay comparable."""
    for name in ("clean", "default", "heavy"):
        deg = Degrade(**DATA_CFG["degrade_presets"][name])
        p = plan_line("TOTAL 12.50", BUNDLED, random.Random(7), deg)
        assert (p.engine, p.unshaped, p.x_frac, p.gamma) == ("pillow", (), 0.0, None)


def test_receipt_text_has_the_kinds_receipts_print() -> None:
    rng = random.Random(5)
    lines = [receipt_line(rng) for _ in range(3000)]
    joined = "\n".join(lines)
    assert all(0 < len(s) <= 40 for s in lines)
    for pattern in ("....", "====", "xxxx", "@", "://", ".com", "\\", "/", "1111", "llll"):
        assert pattern in joined or pattern.upper() in joined, pattern
    assert sum("@" in s and "." in s.split("@")[-1] for s in lines) > 30  # e-mail addresses


@pytest.mark.parametrize("text", ["." * 12, "l" * 12, "1" * 12, ":" * 12, "i" * 12])
def test_every_narrow_glyph_gets_two_frames(text: str) -> None:
    """A run of n equal glyphs needs 2n - 1 CTC frames (a blank between each two): the
    default model has them for lines of 12 `.`, `l`, `1` in every training and held-out
    font, at the line heights the scoring presets draw."""
    model = CRNN(Charset(None).num_classes, **MODEL_CFG["net"])
    fonts = _installed(DATA_CFG["train_fonts"] + DATA_CFG["test_fonts"])[::3] or [BUNDLED]
    worst = 99.0
    for i, font in enumerate(fonts):
        img = paint(plan_line(text, font, random.Random(i), CLEAN))
        width = to_tensor(img, 32, 2000).shape[-1]
        frames = int(model.output_lengths(torch.tensor([width]))[0])
        worst = min(worst, frames / len(text))
    assert worst >= 2.0


@pytest.mark.slow
def test_runs_of_narrow_glyphs_read_back_exactly_once_trained() -> None:
    """A small model of the default layout, trained on lines of runs of `.`, `l`, `1` and
    `x` (1-14 long) for a few hundred steps, reads 12 of each back exactly, in fonts where
    a glyph is 1.1-1.8 feature columns wide: two frames a column leave room for the blanks
    between equal characters."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads beside other jobs stall (docs/training.md)
    try:
        _train_and_read_runs()
    finally:
        torch.set_num_threads(threads)


def _train_and_read_runs() -> None:
    chars = ".l1x"
    charset = Charset(chars + " ")
    fonts = _installed(["DejaVuSans.ttf", "LiberationSansNarrow-Regular.ttf", "Go-Regular.ttf"])
    fonts = fonts or [BUNDLED]
    net_cfg = {**MODEL_CFG["net"], "channels": [16, 32, 32, 48], "hidden": 64}
    model = CRNN(charset.num_classes, **net_cfg)
    steps = 800
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    ctc = torch.nn.CTCLoss(blank=Charset.blank, zero_infinity=True)
    rng = random.Random(0)

    def line(text: str, r: random.Random) -> torch.Tensor:
        return to_tensor(paint(plan_line(text, r.choice(fonts), r, CLEAN)), 32, 2000)

    from ocrtrain.train.data.transforms import collate

    for _step in range(steps):
        texts = [" ".join(rng.choice(chars) * rng.randint(1, 14) for _ in range(rng.randint(1, 2)))
                 for _ in range(16)]  # fmt: skip
        batch = collate([(line(t, rng), t, charset.encode(t)) for t in texts])
        logits = model(batch["images"], batch["widths"]).log_softmax(-1)
        lengths = model.output_lengths(batch["widths"]).clamp(max=logits.shape[0])
        loss = ctc(logits, batch["targets"], lengths, batch["target_lengths"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    texts = [c * 12 for c in chars for _ in fonts]
    batch = collate(
        [(line(t, random.Random(100 + i)), t, charset.encode(t)) for i, t in enumerate(texts)]
    )
    with torch.no_grad():
        logits = model(batch["images"], batch["widths"])
    lengths = model.output_lengths(batch["widths"]).tolist()
    assert decode_batch(logits, lengths, charset, model.frames_per_column) == texts
