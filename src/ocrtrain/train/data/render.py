"""Render a text line with Pillow and degrade it like a cheap receipt scan.

Degradations, each drawn from the sample's own RNG: uneven paper and ink contrast, small
rotation, blur, downscaling to a low line height (down to ~14 px), speckle noise and JPEG
artefacts. `Degrade` holds their ranges; config presets are `clean`, `default` and `heavy`.
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


def render_line(text: str, font_spec: str, rng: random.Random) -> Image.Image:
    """Dark text on light paper, at a font size of 28-40 px, with a few pixels of margin."""
    font = load_font(font_spec, rng.randint(28, 40))
    left, _top, right, bottom = font.getbbox(text)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (bottom, 0)
    pad_x, pad_y = rng.randint(2, 12), rng.randint(2, 8)
    w = max(right - left, 1) + 2 * pad_x
    h = ascent + descent + 2 * pad_y
    paper = rng.randint(190, 255)
    ink = rng.randint(0, 90)
    img = Image.new("L", (w, h), paper)
    ImageDraw.Draw(img).text((pad_x - left, pad_y), text, font=font, fill=ink)
    return img


def degrade(img: Image.Image, rng: random.Random, d: Degrade) -> Image.Image:
    """Apply the receipt degradations of `d` to a grayscale line image."""
    if d.stroke_p > 0 and rng.random() < d.stroke_p:
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
    target_h = rng.randint(d.height_min, max(d.height_min, d.height_max))
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
