"""Render a text line with Pillow and degrade it like a cheap receipt scan.

Degradations, each drawn from the sample's own RNG: uneven paper and ink contrast, small
rotation, blur, downscaling to a low line height (down to ~14 px), speckle noise and JPEG
artefacts. `Degrade` holds their ranges; config presets are `clean`, `default`, `heavy`,
`severe` and `plain`. Some lines are drawn at their final height instead of downscaled
(`native_p`): small text as a screen or PDF renderer draws it, hinted and crisp.

A line is rendered in two steps: `plan_line` draws every random choice (a `LinePlan`), and
`paint` draws the pixels from the plan alone. The plan also tells the finished line's aspect
ratio without drawing it (`LinePlan.aspect`), so training batches can be formed from lines
of similar width: a batch is padded to its widest line, and padding is CNN and LSTM work
for nothing.
"""

from __future__ import annotations

import functools
import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ocrtrain.train.data.fonts import load_font


@dataclass(frozen=True)
class Degrade:
    """Ranges of the degradations; a value is drawn per sample within each range."""

    height_min: int = 14
    height_max: int = 40
    rotate_max: float = 1.5
    blur_p: float = 0.5
    blur_max: float = 1.0
    noise_p: float = 0.5
    noise_max: float = 0.05
    jpeg_p: float = 0.5
    jpeg_q_min: int = 25
    contrast_min: float = 0.55
    gradient_p: float = 0.4
    # Glyph-shape variation, so unseen fonts look less foreign: horizontal stretch and
    # thicker strokes (thermal printers bleed).
    stretch_max: float = 0.0
    stroke_p: float = 0.0
    # Share of lines drawn at their final height (the font's hinting at that size) rather
    # than drawn at 28-40 px and scaled down like a scan.
    native_p: float = 0.0


@dataclass(frozen=True)
class LinePlan:
    """Every random choice of one rendered line; `paint` draws it without drawing again."""

    text: str
    font_spec: str
    font_size: int
    pad_x: int
    pad_y: int
    paper: int
    ink: int
    native: bool
    bolder: bool  # strokes thickened (ink bleed); never for native lines
    stretch: float | None  # horizontal scale factor
    gradient: tuple[float, float] | None  # ink contrast fading from left to right ...
    contrast: float  # ... or one ink contrast for the whole line
    angle: float | None  # rotation in degrees (the image grows to hold the rotated line)
    blur: float | None  # Gaussian blur radius per 24 px of line height
    scale_to: int | None  # scaled down to this height (when below the drawn height)
    noise: tuple[int, float, float] | None  # (seed, Gaussian sigma, salt-and-pepper share)
    jpeg_quality: int | None

    def aspect(self) -> float:
        """Width / height of the finished line, estimated from font metrics without drawing
        it (within a few percent: kerning and hinting are left out)."""
        width = text_width(self.font_spec, self.text) * self.font_size + 2 * self.pad_x
        height = line_height(self.font_spec) * self.font_size + 2 * self.pad_y
        if self.stretch is not None:
            width *= self.stretch
        if self.angle is not None:
            c, s = abs(math.cos(math.radians(self.angle))), abs(math.sin(math.radians(self.angle)))
            width, height = width * c + height * s, width * s + height * c
        return width / max(height, 1.0)


def plan_line(text: str, font_spec: str, rng: random.Random, d: Degrade) -> LinePlan:
    """Draw the random choices of `text` in `font_spec` under `d` from `rng`.

    A line is drawn at a font size of 28-40 px with a few pixels of margin and later scaled
    down, or (`native`) at the size that makes it about its final height, margins in
    proportion; a native line is neither scaled down nor thickened (a 3x3 bleed would fill
    small letters in). The order of the draws is part of the data: changing it changes every
    synthetic line of every seed.
    """
    native = d.native_p > 0 and rng.random() < d.native_p
    if native:
        height = rng.randint(d.height_min, max(d.height_min, d.height_max))
        pad_y = rng.randint(1, max(1, height // 7))
        size = _size_for(font_spec, height - 2 * pad_y)
        pad_x = rng.randint(1, max(1, height // 4))
    else:
        size = rng.randint(28, 40)
        pad_x, pad_y = rng.randint(2, 12), rng.randint(2, 8)
    paper, ink = rng.randint(190, 255), rng.randint(0, 90)
    bolder = not native and d.stroke_p > 0 and rng.random() < d.stroke_p
    stretch = 2.0 ** rng.uniform(-d.stretch_max, d.stretch_max) if d.stretch_max > 0 else None
    gradient: tuple[float, float] | None = None
    contrast = 1.0
    if rng.random() < d.gradient_p:  # uneven lighting / thermal paper fading across the line
        gradient = (rng.uniform(d.contrast_min, 1.0), rng.uniform(d.contrast_min, 1.0))
    else:
        contrast = rng.uniform(d.contrast_min, 1.0)
    angle = rng.uniform(-d.rotate_max, d.rotate_max) if d.rotate_max > 0 else None
    blur = rng.uniform(0.3, d.blur_max) if d.blur_max > 0 and rng.random() < d.blur_p else None
    scale_to = None if native else rng.randint(d.height_min, max(d.height_min, d.height_max))
    noise = None
    if d.noise_max > 0 and rng.random() < d.noise_p:
        seed = rng.getrandbits(32)
        noise = (seed, rng.uniform(0.0, d.noise_max) * 255.0, rng.uniform(0.0, d.noise_max / 2))
    jpeg_quality = rng.randint(d.jpeg_q_min, 90) if rng.random() < d.jpeg_p else None
    return LinePlan(
        text, font_spec, size, pad_x, pad_y, paper, ink, native, bolder, stretch, gradient,
        contrast, angle, blur, scale_to, noise, jpeg_quality,
    )  # fmt: skip


def paint(plan: LinePlan) -> Image.Image:
    """The grayscale line image of `plan`: dark text on light paper, degraded as planned."""
    font = load_font(plan.font_spec, plan.font_size)
    left, _top, right, bottom = font.getbbox(plan.text)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (bottom, 0)
    w = max(right - left, 1) + 2 * plan.pad_x
    h = ascent + descent + 2 * plan.pad_y
    img = Image.new("L", (w, h), plan.paper)
    ImageDraw.Draw(img).text((plan.pad_x - left, plan.pad_y), plan.text, font=font, fill=plan.ink)
    if plan.bolder:
        img = img.filter(ImageFilter.MinFilter(3))  # ink is dark: bolder strokes, as ink bleeds
    if plan.stretch is not None:
        size = (max(1, round(img.width * plan.stretch)), img.height)
        img = img.resize(size, Image.Resampling.BILINEAR)
    if plan.gradient is not None:
        arr = np.asarray(img, dtype=np.float32)
        a, b = plan.gradient
        ramp = np.linspace(a, b, arr.shape[1], dtype=np.float32)[None, :]
        arr = 255.0 - (255.0 - arr) * ramp
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        left = arr[:, :4]
    else:  # one contrast: the same float32 arithmetic, once per gray level (a lookup table)
        level = 255.0 - (255.0 - np.arange(256, dtype=np.float32)) * plan.contrast
        left = level[np.asarray(img)[:, :4]]
        img = img.point(level.clip(0, 255).astype(np.uint8).tolist())
    if plan.angle is not None:
        fill = int(np.median(left))
        bilinear = Image.Resampling.BILINEAR
        img = img.rotate(plan.angle, resample=bilinear, expand=True, fillcolor=fill)
    if plan.blur is not None:
        img = img.filter(ImageFilter.GaussianBlur(plan.blur * img.height / 24))
    if plan.scale_to is not None and plan.scale_to < img.height:
        target_w = max(1, round(img.width * plan.scale_to / img.height))
        img = img.resize((target_w, plan.scale_to), Image.Resampling.BILINEAR)
    if plan.noise is not None:
        seed, sigma, amount = plan.noise
        arr = np.asarray(img, dtype=np.float32)
        nrng = np.random.default_rng(seed)
        arr = arr + nrng.normal(0.0, sigma, arr.shape)
        speck = nrng.random(arr.shape)
        arr[speck < amount / 2] = 0.0
        arr[speck > 1.0 - amount / 2] = 255.0
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if plan.jpeg_quality is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=plan.jpeg_quality)
        buf.seek(0)
        img = Image.open(buf).convert("L")
    return img


_REFERENCE_SIZE = 40


def _extent(font_spec: str) -> int:
    """Ascent + descent in px at the reference font size."""
    font = load_font(font_spec, _REFERENCE_SIZE)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (_REFERENCE_SIZE, 0)
    return max(ascent + descent, 1)


def _size_for(font_spec: str, text_height: int) -> int:
    """The font size whose ascent + descent is about `text_height` px."""
    return max(6, round(text_height * _REFERENCE_SIZE / _extent(font_spec)))


def line_height(font_spec: str) -> float:
    """Ascent + descent per pixel of font size."""
    return _extent(font_spec) / _REFERENCE_SIZE


@functools.lru_cache(maxsize=256)
def _advances(font_spec: str) -> dict[str, float]:
    """Advance widths per pixel of font size, filled in as characters are met."""
    return {}


def text_width(font_spec: str, text: str) -> float:
    """The advance width of `text` per pixel of font size (kerning left out)."""
    advances = _advances(font_spec)
    total = 0.0
    for ch in text:
        w = advances.get(ch)
        if w is None:
            w = advances[ch] = load_font(font_spec, _REFERENCE_SIZE).getlength(ch) / _REFERENCE_SIZE
        total += w
    return total
