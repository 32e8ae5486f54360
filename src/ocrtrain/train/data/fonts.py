"""Find font files by name; Pillow's bundled scalable font (`pillow`) is always available."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)

BUNDLED = "pillow"
FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
)


@functools.cache
def _installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for root in FONT_DIRS:
        base = Path(root).expanduser()
        if not base.is_dir():
            continue
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.lower().endswith((".ttf", ".otf")):
                    found.setdefault(f, str(Path(dirpath) / f))
    return found


def resolve_fonts(names: Iterable[str]) -> list[str]:
    """Font specs (file name, path or `pillow`) that exist here; missing ones are skipped."""
    out: list[str] = []
    for name in names:
        if name == BUNDLED:
            out.append(BUNDLED)
        elif os.path.isabs(name) and os.path.isfile(name):
            out.append(name)
        elif name in _installed():
            out.append(_installed()[name])
    return out


def pick_fonts(names: Sequence[str], fallback: Sequence[str], what: str) -> list[str]:
    """Resolve `names`, else `fallback` (logged: the split is then by size/degradation only)."""
    fonts = resolve_fonts(names)
    if not fonts:
        fonts = resolve_fonts(fallback) or [BUNDLED]
        log.warning("none of the %s fonts is installed; using %s instead", what, fonts)
    return fonts


@functools.lru_cache(maxsize=512)
def load_font(spec: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font object at `size` pixels, cached per worker process."""
    if spec == BUNDLED:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(spec, size=size)
