"""Render a text line with Pillow and degrade it like a cheap receipt scan.

Degradations, each drawn from the sample's own RNG: uneven paper and ink contrast, small
rotation, blur, downscaling to a low line height (down to ~14 px), speckle noise and JPEG
artefacts. `Degrade` holds their ranges; config presets are `clean`, `default`, `heavy`,
`severe` and `plain`. Some lines are drawn at their final height instead of downscaled
(`native_p`): small text as a screen or PDF renderer draws it, hinted and crisp.
"""

from __future__ import annotations

import io
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


def draw_line(text: str, font_spec: str, rng: random.Random, d: Degrade) -> Image.Image:
    """`text` in `font_spec`, rendered and degraded as `d` says."""
    if d.native_p > 0 and rng.random() < d.native_p:
        height = rng.randint(d.height_min, max(d.height_min, d.height_max))
        return degrade(render_line(text, font_spec, rng, height), rng, d, native=True)
    return degrade(render_line(text, font_spec, rng), rng, d)


def render_line(
    text: str, font_spec: str, rng: random.Random, line_height: int | None = None
) -> Image.Image:
    """Dark text on light paper with a few pixels of margin: at a font size of 28-40 px, or
    at the size that makes the line about `line_height` px tall (margins in proportion)."""
    if line_height is None:
        font = load_font(font_spec, rng.randint(28, 40))
    else:
        pad_y = rng.randint(1, max(1, line_height // 7))
        font = load_font(font_spec, _size_for(font_spec, line_height - 2 * pad_y))
    left, _top, right, bottom = font.getbbox(text)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (bottom, 0)
    if line_height is None:
        pad_x, pad_y = rng.randint(2, 12), rng.randint(2, 8)
    else:
        pad_x = rng.randint(1, max(1, line_height // 4))
    w = max(right - left, 1) + 2 * pad_x
    h = ascent + descent + 2 * pad_y
    paper = rng.randint(190, 255)
    ink = rng.randint(0, 90)
    img = Image.new("L", (w, h), paper)
    ImageDraw.Draw(img).text((pad_x - left, pad_y), text, font=font, fill=ink)
    return img


def _size_for(font_spec: str, text_height: int) -> int:
    """The font size whose ascent + descent is about `text_height` px."""
    font = load_font(font_spec, 40)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (40, 0)
    return max(6, round(text_height * 40 / max(ascent + descent, 1)))


def degrade(img: Image.Image, rng: random.Random, d: Degrade, native: bool = False) -> Image.Image:
    """Apply the receipt degradations of `d` to a grayscale line image.

    `native`: the line was drawn at its final height; it is not scaled down, and its strokes
    are not thickened (a 3x3 bleed would fill small letters in).
    """
    if not native and d.stroke_p > 0 and rng.random() < d.stroke_p:
        img = img.filter(ImageFilter.MinFilter(3))  # ink is dark: bolder strokes, as ink bleeds
    if d.stretch_max > 0:
        factor = 2.0 ** rng.uniform(-d.stretch_max, d.stretch_max)
        img = img.resize((max(1, round(img.width * factor)), img.height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < d.gradient_p:  # uneven lighting / thermal paper fading across the line
        a, b = rng.uniform(d.contrast_min, 1.0), rng.uniform(d.contrast_min, 1.0)
        ramp = np.linspace(a, b, arr.shape[1], dtype=np.float32)[None, :]
        arr = 255.0 - (255.0 - arr) * ramp
    else:
        arr = 255.0 - (255.0 - arr) * rng.uniform(d.contrast_min, 1.0)
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if d.rotate_max > 0:
        angle = rng.uniform(-d.rotate_max, d.rotate_max)
        fill = int(np.median(arr[:, :4]))
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
    if d.blur_max > 0 and rng.random() < d.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, d.blur_max) * img.height / 24))
    target_h = img.height if native else rng.randint(d.height_min, max(d.height_min, d.height_max))
    if target_h < img.height:
        target_w = max(1, round(img.width * target_h / img.height))
        img = img.resize((target_w, target_h), Image.Resampling.BILINEAR)
    if d.noise_max > 0 and rng.random() < d.noise_p:
        arr = np.asarray(img, dtype=np.float32)
        nrng = np.random.default_rng(rng.getrandbits(32))
        sigma = rng.uniform(0.0, d.noise_max) * 255.0
        arr = arr + nrng.normal(0.0, sigma, arr.shape)
        speck = nrng.random(arr.shape)
        amount = rng.uniform(0.0, d.noise_max / 2)
        arr[speck < amount / 2] = 0.0
        arr[speck > 1.0 - amount / 2] = 255.0
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if rng.random() < d.jpeg_p:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=rng.randint(d.jpeg_q_min, 90))
        buf.seek(0)
        img = Image.open(buf).convert("L")
    return img
