"""Find font files by name; Pillow's bundled scalable font (`pillow`) is always available.

Training fonts can also come from folders (`data.font_dirs`), and fonts of held-out families
(`data.held_out_families`) are never trained on, whichever way they were named.
"""

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


def fonts_in(dirs: Iterable[str]) -> list[str]:
    """Every .ttf / .otf file under the folders `dirs`, sorted; a missing folder is an error."""
    out: list[str] = []
    for d in dirs:
        base = Path(d).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(f"font folder not found: {d}")
        out += sorted(str(p) for p in base.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    return out


@functools.cache
def family_of(spec: str) -> str:
    """The font's family name as the font names it ('' for Pillow's bundled font)."""
    if spec == BUNDLED:
        return ""
    return ImageFont.truetype(spec, size=12).getname()[0] or ""


def is_held_out(family: str, held_out: Iterable[str]) -> bool:
    """Whether `family` is one of `held_out` or a style family of one ("Roboto Condensed",
    "DejaVu Serif Condensed"); case is ignored."""
    name = family.casefold()
    return any(name == h.casefold() or name.startswith(h.casefold() + " ") for h in held_out)


def without_held_out(specs: Sequence[str], held_out: Sequence[str], what: str) -> list[str]:
    """`specs` less the fonts of held-out families (logged: a font folder may hold them)."""
    out = []
    for spec in specs:
        try:
            family = family_of(spec)
        except OSError:  # not a font FreeType reads: `_drawable` reports it
            family = ""
        if family and is_held_out(family, held_out):
            log.warning("%s font %s is of held-out family %r: not used", what, spec, family)
        else:
            out.append(spec)
    return out


@functools.cache
def missing_glyphs(spec: str, chars: str) -> str:
    """The characters of `chars` that font `spec` has no glyph for.

    A missing glyph is drawn as the font's .notdef box: a line rendered with it would
    teach the model a box for that character, so such fonts are left out.
    """
    if spec == BUNDLED:
        return ""
    font = ImageFont.truetype(spec, size=12)
    notdef = bytes(font.getmask("\U0010fffd"))  # a private-use code point no font draws
    return "".join(c for c in chars if not c.isspace() and bytes(font.getmask(c)) == notdef)


def _drawable(fonts: Sequence[str], chars: str, what: str) -> list[str]:
    out = []
    for spec in fonts:
        try:
            lacking = missing_glyphs(spec, chars)
        except OSError as exc:  # not a font file FreeType can read
            log.warning("%s font %s cannot be loaded (%s): not used", what, spec, exc)
            continue
        if lacking:
            log.warning("%s font %s has no glyph for %r: not used", what, spec, lacking)
        else:
            out.append(spec)
    return out


def usable_fonts(
    names: Sequence[str], what: str, chars: str = "", warn_missing: bool = False
) -> list[str]:
    """The fonts of `names` that are installed and can draw every character of `chars`.

    A font that cannot draw them is logged; one that is not installed only with
    `warn_missing` (fonts a user named, not the optional packages of the config).
    """
    found = resolve_fonts(names)
    if warn_missing:
        for name in names:
            if name != BUNDLED and name not in _installed() and not os.path.isfile(name):
                log.warning("%s font %s is not installed: not used", what, name)
    return _drawable(found, chars, what)


def pick_fonts(
    names: Sequence[str], fallback: Sequence[str], what: str, chars: str = ""
) -> list[str]:
    """The fonts of `names` that are installed and can draw every character of `chars`, else
    those of `fallback` (logged: the split then differs by size and degradation only)."""
    fonts = usable_fonts(names, what, chars)
    if not fonts:
        fonts = _drawable(resolve_fonts(fallback), chars, what) or [BUNDLED]
        log.warning("none of the %s fonts is installed and usable; using %s instead", what, fonts)
    return fonts


@functools.lru_cache(maxsize=512)
def load_font(spec: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font object at `size` pixels, cached per worker process."""
    if spec == BUNDLED:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(spec, size=size)
