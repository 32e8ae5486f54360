"""Render a text line with one of two text engines and degrade it like a cheap receipt scan.

Engines: FreeType through Pillow (HarfBuzz shaping via raqm; kerning and ligatures on or off,
antialiased or not, at subpixel offsets) and, for a share of lines (`skia_p`), Skia (its own
rasterizer and hinting levels, synthetic bold and oblique, shaped or unshaped text). A model
trained on one engine learns its glyph shapes, not the letters: lines drawn by another engine
(cairo, as browsers and PDF tools draw) read several times worse (bench/unseen_engine.py).

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

import dataclasses
import functools
import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ocrtrain.train.data.fonts import BUNDLED, load_font


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
    # Text-engine variety (all 0 in the scoring presets, which stay as they were): share of
    # lines drawn by Skia, share drawn without antialiasing, share with kerning or ligatures
    # off, ink coverage gamma 2**[-gamma_max, gamma_max] (thinner or heavier strokes),
    # fractional (subpixel) start positions.
    skia_p: float = 0.0
    aliased_p: float = 0.0
    unshaped_p: float = 0.0
    gamma_max: float = 0.0
    subpixel: bool = False


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
    engine: str = "pillow"  # or "skia"
    antialias: bool = True
    unshaped: tuple[str, ...] = ()  # OpenType features turned off ("kern", "liga")
    x_frac: float = 0.0  # subpixel start offset
    gamma: float | None = None  # ink coverage exponent
    hinting: int = 1  # Skia: 0 none, 1 slight, 2 normal, 3 full
    embolden: bool = False  # Skia's synthetic bold
    skew: float = 0.0  # Skia's synthetic oblique

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
    plan = LinePlan(
        text, font_spec, size, pad_x, pad_y, paper, ink, native, bolder, stretch, gradient,
        contrast, angle, blur, scale_to, noise, jpeg_quality,
    )  # fmt: skip
    return _vary_engine(plan, rng, d)


def _vary_engine(plan: LinePlan, rng: random.Random, d: Degrade) -> LinePlan:
    """The text-engine choices of `plan`, drawn after the others and only where `d` asks
    for them, so the scoring presets' lines stay the same image for image."""
    if not (d.skia_p or d.aliased_p or d.unshaped_p or d.gamma_max or d.subpixel):
        return plan
    skia = d.skia_p > 0 and rng.random() < d.skia_p
    skia = skia and plan.font_spec != BUNDLED and skia_available()
    aliased = rng.random() < d.aliased_p
    unshaped = tuple(f for f in ("kern", "liga") if rng.random() < d.unshaped_p)
    x_frac = rng.random() if d.subpixel else 0.0
    gamma = 2.0 ** rng.uniform(-d.gamma_max, d.gamma_max) if d.gamma_max > 0 else None
    hinting, embolden, skew = rng.randint(0, 3), rng.random() < 0.15, 0.0
    if rng.random() < 0.1:
        skew = -rng.uniform(0.1, 0.25)
    if not skia:
        hinting, embolden, skew = 1, False, 0.0
    return dataclasses.replace(
        plan,
        engine="skia" if skia else "pillow",
        antialias=not aliased,
        unshaped=unshaped,
        x_frac=x_frac,
        gamma=gamma,
        hinting=hinting,
        embolden=embolden,
        skew=skew,
    )


def paint(plan: LinePlan) -> Image.Image:
    """The grayscale line image of `plan`: dark text on light paper, degraded as planned."""
    img = draw_skia(plan) if plan.engine == "skia" else draw_pillow(plan)
    if plan.gamma is not None:  # ink coverage ** gamma: strokes look thinner or heavier
        cover = np.clip((plan.paper - np.arange(256.0)) / max(plan.paper - plan.ink, 1), 0, 1)
        img = img.point((plan.paper - (plan.paper - plan.ink) * cover**plan.gamma).round().tolist())
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
        clean = np.asarray(img, dtype=np.float32)
        nrng = np.random.default_rng(seed)
        noisy = clean + nrng.normal(0.0, sigma, clean.shape)
        speck = nrng.random(noisy.shape)
        noisy[speck < amount / 2] = 0.0
        noisy[speck > 1.0 - amount / 2] = 255.0
        img = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    if plan.jpeg_quality is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=plan.jpeg_quality)
        buf.seek(0)
        img = Image.open(buf).convert("L")
    return img


def draw_pillow(plan: LinePlan) -> Image.Image:
    """The undegraded line as FreeType draws it through Pillow."""
    font = load_font(plan.font_spec, plan.font_size)
    left, _top, right, bottom = font.getbbox(plan.text)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (bottom, 0)
    w = max(right - left, 1) + 2 * plan.pad_x + (1 if plan.x_frac else 0)
    h = ascent + descent + 2 * plan.pad_y
    img = Image.new("L", (int(w), int(h)), plan.paper)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "L" if plan.antialias else "1"
    raqm = getattr(font, "layout_engine", None) == ImageFont.Layout.RAQM
    features = [f"-{f}" for f in plan.unshaped] if plan.unshaped and raqm else None
    xy = (plan.pad_x - left + plan.x_frac, plan.pad_y)
    draw.text(xy, plan.text, font=font, fill=plan.ink, features=features)
    return img


def draw_skia(plan: LinePlan) -> Image.Image:
    """The undegraded line as Skia draws it: its own rasterizer, hinting and shaping."""
    import skia

    font = skia.Font(_skia_typeface(plan.font_spec), plan.font_size)
    font.setHinting(getattr(skia.FontHinting, _SKIA_HINTING_NAMES[plan.hinting]))
    font.setEdging(skia.Font.Edging.kAntiAlias if plan.antialias else skia.Font.Edging.kAlias)
    font.setSubpixel(bool(plan.x_frac))
    font.setEmbolden(plan.embolden)
    font.setSkewX(plan.skew)
    metrics = font.getMetrics()
    ascent, descent = -metrics.fAscent, metrics.fDescent
    shaped = not plan.unshaped
    blob = (skia.TextBlob.MakeFromShapedText if shaped else skia.TextBlob.MakeFromString)(
        plan.text, font
    )
    if blob is None:  # nothing drawable (cannot happen for the charset's fonts)
        return draw_pillow(dataclasses.replace(plan, engine="pillow"))
    margin = plan.font_size  # room for overhangs: the ink's columns are cut out below
    width = math.ceil(font.measureText(plan.text) * 1.2) + 2 * margin
    height = math.ceil(ascent + descent) + 2 * plan.pad_y
    surface = skia.Surface(width, height)
    canvas = surface.getCanvas()
    canvas.clear(skia.Color(plan.paper, plan.paper, plan.paper))
    paint = skia.Paint(Color=skia.Color(plan.ink, plan.ink, plan.ink), AntiAlias=plan.antialias)
    top = plan.pad_y if shaped else plan.pad_y + ascent  # shaped blobs hang from their top
    canvas.drawTextBlob(blob, margin + plan.x_frac, top, paint)
    gray = np.ascontiguousarray(surface.makeImageSnapshot().toarray()[:, :, 0])
    ink_cols = np.flatnonzero((gray < plan.paper).any(axis=0))
    if ink_cols.size == 0:
        return Image.fromarray(gray)
    left = max(0, int(ink_cols[0]) - plan.pad_x)
    right = min(width, int(ink_cols[-1]) + 1 + plan.pad_x)
    return Image.fromarray(gray[:, left:right])


_SKIA_HINTING_NAMES = ("kNone", "kSlight", "kNormal", "kFull")


@functools.lru_cache(maxsize=512)
def _skia_typeface(spec: str) -> object:
    import skia

    return skia.Typeface.MakeFromFile(spec)


@functools.cache
def skia_available() -> bool:
    """Whether Skia (skia-python) can be imported here; without it every line is Pillow's."""
    try:
        import skia  # noqa: F401
    except ImportError:
        return False
    return True


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
