"""Fixed-height resize, tensor conversion and width-padding collation for line images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

Sample = tuple[torch.Tensor, str, list[int]]


def to_tensor(
    img: Image.Image, height: int, max_width: int, width_scale: float = 1.0
) -> torch.Tensor:
    """Grayscale, resized to `height`, contrast-normalized; ink is high (~1), paper ~0.

    The width keeps the aspect ratio times `width_scale`: squeezing lines horizontally (0.5)
    halves the CNN's work and still leaves about two CTC frames per character.
    """
    img = img.convert("L")
    scale = height / max(img.height, 1) * width_scale
    width = max(8, min(max_width, round(img.width * scale)))
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(stretch_contrast(arr))[None]


def stretch_contrast(ink: np.ndarray) -> np.ndarray:
    """Map a line's paper level to 0 and its darkest ink to 1 (`ink`: ink-high, 0..1).

    Paper is the 10th percentile (most of a line is paper), ink the 99th. Without this the
    model reads only the contrasts it was trained on: pure black on white, the commonest real
    input, lies at the edge of the synthetic lines' range (grey paper, faded ink) and was
    misread ("12.50" as "12 50"). A line with no clear ink (range under 0.1) is left as is.
    """
    paper, dark = _percentiles(ink, (10, 99))
    if dark - paper < 0.1:
        return ink
    return np.clip((ink - paper) / (dark - paper), 0.0, 1.0).astype(np.float32)


def _percentiles(a: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """`np.percentile(a, qs)` (linear interpolation) from one partial sort: ~3x faster on
    a line's pixels, which every training line pays in a loader worker."""
    flat = a.ravel()
    last = flat.size - 1
    where = [q / 100 * last for q in qs]
    ranks = sorted({r for w in where for r in (math.floor(w), min(math.floor(w) + 1, last))})
    part = np.partition(flat, ranks)
    out = []
    for w in where:
        lo = math.floor(w)
        low, high = float(part[lo]), float(part[min(lo + 1, last)])
        out.append(low + (high - low) * (w - lo))
    return out


def _ink_box(a: np.ndarray) -> tuple[np.ndarray, int, int, int, int] | None:
    """The ink mask of the text rows and the ink's bounding box (top, bottom, left, right),
    or None when the image shows no clear text."""
    if a.size == 0:
        return None
    paper, ink = np.percentile(a, 90), np.percentile(a, 1)
    if paper - ink < 40:  # no clear text
        return None
    mask = a < paper - 0.25 * (paper - ink)
    rows = np.flatnonzero(mask.sum(axis=1) >= 2)
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    band = mask[top:bottom]
    cols = np.flatnonzero(band.any(axis=0))  # a 1 px underscore is one pixel a column
    if cols.size == 0:
        return None
    return band, top, bottom, int(cols[0]), int(cols[-1]) + 1


def _median3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The elementwise median of three arrays."""
    out: np.ndarray = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return out


def _despeckled(a: np.ndarray) -> np.ndarray:
    """Dark on light `a` without isolated specks, thin strokes kept: a pixel stays dark if
    it is dark in the median of its row's 3 neighbours or in that of its column's.

    A 3x3 median would also erase the 1 px strokes of small rules and underscores (`=====`
    at 15 px), whose columns then looked like blank paper and were cut off."""
    p = np.pad(a, 1, mode="edge")
    across = _median3(p[1:-1, :-2], p[1:-1, 1:-1], p[1:-1, 2:])
    down = _median3(p[:-2, 1:-1], p[1:-1, 1:-1], p[2:, 1:-1])
    out: np.ndarray = np.minimum(across, down)
    return out


def _longest_vertical_runs(band: np.ndarray) -> np.ndarray:
    """The longest unbroken vertical run of ink in each column of a boolean mask."""
    run = np.zeros(band.shape[1], dtype=np.int32)
    longest = np.zeros_like(run)
    for row in band:
        run = np.where(row, run + 1, 0)
        np.maximum(longest, run, out=longest)
    return longest


def _one_glyph_repeated(ink: np.ndarray, similar: float = 0.8) -> bool:
    """Whether the column profile of `ink` (the mask of its box) repeats at some glyph pitch
    (`*****`, `+ + + +`): its autocorrelation, past the first lag where it turns negative,
    reaches `similar`. Text lines stay below ~0.7, rules of one symbol reach 0.83-0.97."""
    x = ink.sum(axis=0).astype(np.float64)
    x -= x.mean()
    power = float((x * x).sum())
    if power == 0.0:
        return False
    ac = np.correlate(x, x, "full")[len(x) - 1 :] / power
    negative = np.flatnonzero(ac < 0)
    if negative.size == 0:
        return False
    later = ac[negative[0] : len(x) // 2]
    return bool(later.size and later.max() >= similar)


def trim_margins(img: Image.Image) -> Image.Image:
    """Cut blank margins far wider than the synthetic lines' down to half the text height.

    Every line is resized to the model's height, so a crop with a wide margin above and below
    shows the model smaller text than it was trained on (20 px of paper above and below a
    clean 35 px line: 68% CER instead of 1.2%). A side is cut only when its margin is clearly
    wider than any training line's (above and below: text under 40% of the height and more
    than 0.6x its height of paper on both sides; left or right: more than 1x), so tightly
    cropped lines, and lines whose ink cannot be told from speckle, are left as they are.
    Ink: pixels well below the paper level once isolated specks are gone (`_despeckled`);
    faint, faded ink still counts. Ink without letters' stems (a rule `=====`, a leader
    `.....`, `:::::` alone on a line) or one glyph repeated (`*****`) is not cut to: the
    line would be resized into giant dashes or stars.
    """
    gray = img.convert("L")
    a = _despeckled(np.asarray(gray, dtype=np.float32))
    box = _ink_box(a)
    if box is None:
        return img
    band, top, bottom, left, right = box
    h_img, w_img = a.shape
    text_h = bottom - top
    runs = int(band[0].sum() + (band[1:] & ~band[:-1]).sum())  # vertical ink runs
    if text_h < 2.2 * band.sum() / max(runs, 1):  # ~2 strokes tall: dots, dashes, rules,
        return img  # whose margins are those of the letters they stand with: left alone
    if (_longest_vertical_runs(band) >= 0.5 * text_h).sum() < 2:  # no stem spans the ink:
        return img  # `=====`, `:::::`, `~~~~~` alone on a line, also left alone
    if _one_glyph_repeated(band[:, left:right]):  # `*****`, `+++++`: a symbol's height
        return img  # is no text height
    keep = round(0.5 * text_h)
    y0, y1, x0, x1 = 0, h_img, 0, w_img
    if text_h < 0.4 * h_img and min(top, h_img - bottom) > 0.6 * text_h:
        y0, y1 = top - keep, bottom + keep
    if left > text_h:
        x0 = left - keep
    if w_img - right > text_h:
        x1 = right + keep
    if (x0, y0, x1, y1) == (0, 0, w_img, h_img):
        return img
    return img.crop((x0, y0, x1, y1))


def dark_on_light(img: Image.Image) -> Image.Image:
    """Grayscale with dark text on light paper, as the model was trained on.

    Camera JPEGs are turned upright (EXIF orientation), transparent pixels become white paper
    (text drawn on a transparent canvas would otherwise turn black on black), and light text
    on a dark ground (a receipt's reversed header) is inverted. 16-bit and float grayscale
    (scanners, TIFFs) are scaled to 8 bits, not clipped at 255.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        a = np.asarray(img, dtype=np.float64)
        peak = float(a.max()) if a.size else 0.0
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F" and peak <= 1.0:  # floats in 0..1
            top = 1.0
        else:  # 32-bit integers or floats: 8-bit values stay, wider ones are scaled down
            top = max(peak, 255.0)
        img = Image.fromarray(np.clip(a * 255.0 / top, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    gray = img.convert("L")
    if gray.width and gray.height and np.median(np.asarray(gray)) < 100:
        gray = ImageOps.invert(gray)
    return gray


def read_line_image(
    path: str | Path, height: int, max_width: int, width_scale: float = 1.0
) -> torch.Tensor:
    """A line image file as the model's input: dark on light, wide blank margins trimmed,
    then `to_tensor`."""
    with Image.open(path) as im:
        return to_tensor(trim_margins(dark_on_light(im)), height, max_width, width_scale)


def collate(batch: list[Sample]) -> dict[str, Any]:
    """Pad images on the right to the widest one (a multiple of 4) and pack CTC targets."""
    images, texts, labels = zip(*batch, strict=True)
    height = images[0].shape[1]
    width = max(4, 4 * math.ceil(max(im.shape[2] for im in images) / 4))
    out = torch.zeros(len(images), 1, height, width)
    for i, im in enumerate(images):
        out[i, :, :, : im.shape[2]] = im
    return {
        "images": out,
        "widths": torch.tensor([im.shape[2] for im in images], dtype=torch.long),
        "targets": torch.tensor([i for lab in labels for i in lab], dtype=torch.long),
        "target_lengths": torch.tensor([len(lab) for lab in labels], dtype=torch.long),
        "texts": list(texts),
    }
