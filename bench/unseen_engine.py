"""A checkpoint's CER on lines no training renderer drew, in font families no recipe trains on.

    .venv/bin/python bench/unseen_engine.py --ckpt outputs/receipts/latest/checkpoints/best.ckpt
        [--n 300] [--seed 2026] [--out DIR] [--errors 10] [--no-tesseract] [--json]

The lines are shaped by HarfBuzz and rasterized by cairo (Pango, as browsers, GTK and PDF
tools draw text), while training draws with FreeType through Pillow and with Skia. The fonts
are `HELD_OUT_FAMILIES`, families that no recipe trains on (`data.held_out_families`). The
text comes from this script's own generator, not the training one: receipt lines with dot
leaders, rules, masked card numbers, long digit strings, repeated letters, e-mail and web
addresses, file paths, currency and unit forms. Two sets of `--n` lines each:

- clean: 18-36 px, dark ink on light paper, drawn at that size (hinted, antialiased);
- degraded: drawn at 24-40 px, tilted up to 2 degrees, blurred, scaled down to 14-20 px,
  speckled and JPEG-compressed (quality 35-80).

Both are written as labels.tsv folders and scored with `ocrtrain eval`; Tesseract (`--psm 7`)
reads the same images where it is installed. Needs the system's Pango and cairo libraries
(Debian: libpangocairo-1.0-0) and the Python packages cairocffi, pangocffi, pangocairocffi
(`pip install -e '.[bench]'`). The default seed is the reported set; develop on another.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

# (family, bold face available). Receipts print in sans, mono and the odd serif; every one of
# these families is kept out of `data.train_fonts` (tests/train/test_data.py checks it).
HELD_OUT_FAMILIES: tuple[str, ...] = (
    "Roboto",
    "Lato",
    "Inter",
    "Fira Code",
    "Carlito",
    "PT Sans",
    "PT Serif",
    "PT Mono",
    "Noto Mono",
    "Cantarell",
    "OCR B",
    "DejaVu Serif",
    "Liberation Serif",
    "Liberation Mono",
)
DEFAULT_SEED = 2026

# ---------------------------------------------------------------------------------------
# Text: this benchmark's own receipt generator (independent of ocrtrain's training text).

_NAMES = (
    "ESPRESSO DOPPIO", "Oat Latte", "CROISSANT", "Bagel w/ Lox", "AA BATTERIES 4PK",
    "Paper Towels", "BOTTLED WATER", "Kiwi Gold", "Coffee Filters #4", "LED Bulb 9W",
    "Greek Yogurt", "SPARKLING H2O", "Mozzarella", "Toilet Roll x12", "ZZZQUIL 12CT",
    "Apple Pie", "HDMI Cable 2m", "Dish Soap", "Shallots", "Wireless Mouse", "Q-Tips 500",
    "Tortilla Chips", "Ham & Cheese", "MILK 1L 3.5%", "Lollipop", "Pillow Case",
)  # fmt: skip
_WORDS = (
    "north", "wind", "lumen", "harbor", "acme", "pixel", "maple", "quill", "orbit", "falcon",
    "juniper", "zephyr", "cobalt", "willow", "vortex", "bistro", "kettle", "yellow", "illini",
)  # fmt: skip
_TLDS = ("com", "org", "net", "co.uk", "de", "io", "shop", "info")
_CURRENCY = ("$", "USD ", "EUR ", "GBP ", "CHF ", "", "")


def _money(rng: random.Random, hi: float = 250.0) -> str:
    v = rng.choice((rng.uniform(0.05, 9.99), rng.uniform(1, hi), rng.uniform(100, 9999)))
    s = f"{v:,.2f}" if rng.random() < 0.7 else f"{v:.2f}"
    if rng.random() < 0.15:  # European grouping
        s = s.replace(",", " ").replace(".", ",")
    return s


def _leader(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    price = f"{rng.choice(_CURRENCY)}{_money(rng)}"
    dots = rng.choice(".-_ ") * rng.randint(3, 14)
    return f"{name} {dots} {price}"


def _rule(rng: random.Random) -> str:
    ch = rng.choice("=-*_~#.+")
    n = rng.randint(8, 32)
    if rng.random() < 0.3:
        return (ch + " ") * (n // 2)
    if rng.random() < 0.3:
        word = rng.choice(("TOTAL", "SUBTOTAL", "VOID", "COPY", "END"))
        side = ch * rng.randint(3, 10)
        return f"{side} {word} {side}"
    return ch * n


def _masked(rng: random.Random) -> str:
    last = f"{rng.randint(0, 9999):04d}"
    mask = rng.choice("xX*#")
    forms = (
        f"{mask * 4} {mask * 4} {mask * 4} {last}",
        f"{mask * 12}{last}",
        f"CARD {mask * 4}{last}",
        f"VISA {mask * 8}{last}",
        f"Acct: {mask * 6}-{last}",
        f"MC ending in {last}",
    )
    return rng.choice(forms)


def _digits(rng: random.Random) -> str:
    n = rng.randint(8, 20)
    digits = "".join(rng.choice(string.digits) for _ in range(n))
    if rng.random() < 0.3:  # runs of one digit: 0000, 1111
        d = rng.choice("01178")
        digits = digits[:3] + d * rng.randint(3, 8) + digits[3:8]
    label = rng.choice(("TRN", "REF", "EAN", "Auth", "Seq#", "ID", "Barcode", "Invoice"))
    return f"{label} {digits}"


def _repeated(rng: random.Random) -> str:
    ch = rng.choice("l1i.:-=0mwx")  # no I or O: alone, a run of them reads as l or 0
    run = ch * rng.randint(3, 12)
    forms = (run, f"{rng.choice(_NAMES)} {run}", f"{run} {rng.randint(1, 99)}", f"ZZZ {run}")
    return rng.choice(forms)


def _email(rng: random.Random) -> str:
    user = rng.choice(_WORDS) + rng.choice(("", ".", "_", "-")) + rng.choice(_WORDS)
    if rng.random() < 0.4:
        user += str(rng.randint(1, 999))
    domain = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}.{rng.choice(_TLDS)}"
    return rng.choice(("", "Email: ", "Contact ")) + f"{user}@{domain}"


def _url(rng: random.Random) -> str:
    host = f"{rng.choice(('www.', 'shop.', ''))}{rng.choice(_WORDS)}{rng.choice(_WORDS)}"
    path = "/".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 2)))
    query = f"?id={rng.getrandbits(24):06x}" if rng.random() < 0.4 else ""
    return f"{rng.choice(('https://', 'http://', ''))}{host}.{rng.choice(_TLDS)}/{path}{query}"


def _path(rng: random.Random) -> str:
    parts = [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    name = f"{rng.choice(('rcpt', 'log', 'batch'))}_{rng.randint(0, 99999):05d}"
    ext = rng.choice((".txt", ".dat", ".csv", ".log"))
    if rng.random() < 0.5:
        return f"/var/{'/'.join(parts)}/{name}{ext}"
    folders = "\\".join(p.upper() for p in parts)
    return f"C:\\POS\\{folders}\\{name}{ext}"


def _unit(rng: random.Random) -> str:
    forms = (
        f"{rng.uniform(0.05, 4):.3f} kg @ {_money(rng, 30)}/kg",
        f"{rng.randint(1, 9)} x {rng.choice(('0.5L', '1.5L', '330ml', '12oz', '500g'))}"
        f"  {_money(rng, 40)}",
        f"{rng.randint(2, 48)} @ {rng.choice(_CURRENCY)}{_money(rng, 20)} ea",
        f"TAX {rng.choice(('7%', '8.25%', '19%', '20 %', '5.5%'))} {_money(rng, 60)}",
        f"{rng.uniform(1, 60):.2f} gal @ {rng.uniform(2, 6):.3f}/gal",
        f"-{_money(rng, 20)} DISCOUNT ({rng.randint(5, 50)}% off)",
    )
    return rng.choice(forms)


def _misc(rng: random.Random) -> str:
    hh, mm = rng.randint(0, 23), rng.randint(0, 59)
    forms = (
        f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2019, 2031)} "
        f"{hh:02d}:{mm:02d}:{rng.randint(0, 59):02d}",
        f"Tel +{rng.randint(1, 49)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}",
        f"TOTAL DUE {rng.choice(_CURRENCY)}{_money(rng)}",
        f"Change: {_money(rng, 20)}   Cash: {_money(rng, 100)}",
        f"Server: {rng.choice(_WORDS).capitalize()} #{rng.randint(1, 99)} T{rng.randint(1, 40)}",
        "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(5, 20))),
    )
    return rng.choice(forms)


_KINDS: tuple[tuple[Callable[[random.Random], str], float], ...] = (
    (_leader, 0.16),
    (_rule, 0.08),
    (_masked, 0.10),
    (_digits, 0.10),
    (_repeated, 0.08),
    (_email, 0.10),
    (_url, 0.10),
    (_path, 0.08),
    (_unit, 0.10),
    (_misc, 0.10),
)


def bench_text(rng: random.Random, max_chars: int = 40) -> str:
    """One line of this benchmark's receipt text: printable ASCII, single spaces, no edges."""
    funcs, weights = zip(*_KINDS, strict=True)
    while True:
        line = " ".join(rng.choices(funcs, weights)[0](rng).split())[:max_chars].strip()
        if line:
            return line


# ---------------------------------------------------------------------------------------
# Rendering: HarfBuzz shaping and cairo rasterizing through Pango.


@dataclass(frozen=True)
class Drawn:
    """A rendered line and what drew it."""

    image: Image.Image
    text: str
    family: str


class PangoRenderer:
    """Draws lines with Pango (HarfBuzz + cairo) in installed families, checked by name."""

    def __init__(self, families: Sequence[str]) -> None:
        import cairocffi
        import pangocairocffi
        import pangocffi

        self.cairo, self.pango, self.pangocairo = cairocffi, pangocffi, pangocairocffi
        self.families = [f for f in families if self.resolves(f)]

    def _layout(self, text: str, family: str, px: float, bold: bool = False) -> tuple[object, ...]:
        surface = self.cairo.ImageSurface(self.cairo.FORMAT_RGB24, 4, 4)
        ctx = self.cairo.Context(surface)
        layout = self.pangocairo.create_layout(ctx)
        desc = self.pango.FontDescription()
        desc.family = family
        desc.set_absolute_size(self.pango.units_from_double(px))
        if bold:
            desc.weight = self.pango.Weight.BOLD
        layout.font_description = desc
        layout.text = text
        return layout, desc

    def resolves(self, family: str) -> bool:
        """Whether fontconfig gives `family` itself (not a fallback) for that name."""
        layout, desc = self._layout("x", family, 20)
        lib, ffi = self.pango.pango, self.pango.ffi
        font = lib.pango_context_load_font(layout.context.pointer, desc.pointer)  # type: ignore[attr-defined]
        if font == ffi.NULL:
            return False
        got = lib.pango_font_describe(font)
        name = ffi.string(lib.pango_font_description_get_family(got)).decode()
        return name.lower() == family.lower()

    def draw(
        self, text: str, family: str, px: float, bold: bool, ink: int, paper: int
    ) -> Image.Image:
        """Dark `ink` text on `paper`, font size `px` pixels, a small margin around it."""
        layout, _ = self._layout(text, family, px, bold)
        _ink, logical = layout.get_extents()  # type: ignore[attr-defined]
        to_px = self.pango.units_to_double
        w, h = math.ceil(to_px(logical.width)), math.ceil(to_px(logical.height))
        mx, my = max(2, round(px * 0.3)), max(1, round(px * 0.12))
        surface = self.cairo.ImageSurface(self.cairo.FORMAT_RGB24, w + 2 * mx, h + 2 * my)
        ctx = self.cairo.Context(surface)
        ctx.set_source_rgb(paper / 255, paper / 255, paper / 255)
        ctx.paint()
        ctx.set_source_rgb(ink / 255, ink / 255, ink / 255)
        ctx.move_to(mx - to_px(logical.x), my - to_px(logical.y))
        layout2 = self.pangocairo.create_layout(ctx)
        layout2.font_description = layout.font_description  # type: ignore[attr-defined]
        layout2.text = text
        self.pangocairo.show_layout(ctx, layout2)
        surface.flush()
        stride = surface.get_stride()
        buf = np.frombuffer(surface.get_data(), np.uint8).reshape(surface.get_height(), stride)
        rgb = buf[:, : surface.get_width() * 4].reshape(surface.get_height(), -1, 4)
        return Image.fromarray(np.ascontiguousarray(rgb[:, :, 1]))  # gray: any channel


def clean_line(r: PangoRenderer, text: str, rng: random.Random) -> Drawn:
    family = rng.choice(r.families)
    height = rng.randint(18, 36)
    img = r.draw(
        text, family, height / 1.25, rng.random() < 0.2, rng.randint(0, 50), rng.randint(225, 255)
    )
    return Drawn(img, text, family)


def degraded_line(r: PangoRenderer, text: str, rng: random.Random) -> Drawn:
    family = rng.choice(r.families)
    paper, ink = rng.randint(185, 245), rng.randint(20, 100)
    img = r.draw(text, family, rng.randint(24, 40) / 1.25, rng.random() < 0.2, ink, paper)
    img = img.rotate(rng.uniform(-2, 2), Image.Resampling.BILINEAR, expand=True, fillcolor=paper)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8) * img.height / 24))
    height = rng.randint(14, 20)
    img = img.resize(
        (max(1, round(img.width * height / img.height)), height), Image.Resampling.BILINEAR
    )
    arr = np.asarray(img, dtype=np.float32)
    nrng = np.random.default_rng(rng.getrandbits(32))
    arr = arr + nrng.normal(0, rng.uniform(2, 10), arr.shape)
    speck = nrng.random(arr.shape)
    share = rng.uniform(0.0, 0.015)
    arr[speck < share / 2], arr[speck > 1 - share / 2] = 0.0, 255.0
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=rng.randint(35, 80))
    return Drawn(Image.open(io.BytesIO(out.getvalue())).convert("L"), text, family)


SETS: dict[str, Callable[[PangoRenderer, str, random.Random], Drawn]] = {
    "clean": clean_line,
    "degraded": degraded_line,
}


def write_set(r: PangoRenderer, name: str, n: int, seed: int, out: Path) -> list[Drawn]:
    """`n` lines of set `name` as a labels.tsv folder under `out/name`."""
    folder = out / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    drawn, rows = [], []
    for i in range(n):
        rng = random.Random(f"unseen:{seed}:{name}:{i}")
        d = SETS[name](r, bench_text(rng), rng)
        d.image.save(folder / "images" / f"{i:05d}.png")
        rows.append(f"images/{i:05d}.png\t{d.text}\n")
        drawn.append(d)
    (folder / "labels.tsv").write_text("".join(rows), encoding="utf-8")
    return drawn


# ---------------------------------------------------------------------------------------
# Scoring.


def ocrtrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrtrain", *args], capture_output=True, text=True, check=False
    )


def score_ocrtrain(ckpt: str, folder: Path) -> dict[str, float]:
    done = ocrtrain("eval", "--ckpt", ckpt, "--data", str(folder), "--json")
    if done.returncode != 0:
        raise SystemExit(f"ocrtrain eval failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def predictions(ckpt: str, folder: Path, n: int) -> list[str]:
    paths = [str(folder / "images" / f"{i:05d}.png") for i in range(n)]
    done = ocrtrain("predict", "--ckpt", ckpt, *paths)
    return [line.partition("\t")[2] for line in done.stdout.splitlines()]


def score_tesseract(folder: Path, drawn: Sequence[Drawn], jobs: int) -> dict[str, float] | None:
    exe = shutil.which("tesseract")
    if exe is None:
        return None
    sys.path.insert(0, str(Path(__file__).parent))
    from tesseract_reference import read_line

    from ocrtrain.train.metrics import TextScore

    paths = [folder / "images" / f"{i:05d}.png" for i in range(len(drawn))]
    with ThreadPoolExecutor(jobs) as pool:
        read = list(pool.map(lambda p: read_line(exe, p, "eng"), paths))
    s = TextScore()
    s.update(read, [d.text for d in drawn])
    return {"cer": s.cer, "line_acc": s.line_acc, "lines": s.lines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="outputs/receipts/latest/checkpoints/best.ckpt")
    parser.add_argument("--n", type=int, default=300, help="lines per set")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", help="keep the sets in this folder (default: a temp folder)")
    parser.add_argument("--errors", type=int, default=0, help="print up to N misread lines")
    parser.add_argument("--no-tesseract", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if not Path(args.ckpt).is_file():
        print(f"ERROR: checkpoint not found: {args.ckpt}", file=sys.stderr)
        return 2
    try:
        renderer = PangoRenderer(HELD_OUT_FAMILIES)
    except (ImportError, OSError) as exc:
        print(
            f"ERROR: Pango/cairo not available ({exc}): pip install -e '.[bench]'", file=sys.stderr
        )
        return 1
    if not renderer.families:
        print("ERROR: none of the held-out families is installed (make fonts)", file=sys.stderr)
        return 1
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for name in SETS:
            drawn = write_set(renderer, name, args.n, args.seed, out)
            row: dict[str, object] = {"ocrtrain": score_ocrtrain(args.ckpt, out / name)}
            if not args.no_tesseract:
                row["tesseract"] = score_tesseract(out / name, drawn, args.jobs)
            if args.errors:
                read = predictions(args.ckpt, out / name, args.n)
                row["errors"] = [
                    (d.family, d.text, p) for d, p in zip(drawn, read, strict=True) if p != d.text
                ][: args.errors]
            rows[name] = row
    if args.json:
        print(json.dumps({"families": renderer.families, "sets": rows}))
        return 0
    print(f"checkpoint: {args.ckpt}  seed {args.seed}, {args.n} lines per set")
    print(f"held-out families drawn by Pango/cairo: {', '.join(renderer.families)}")
    print("| set | ocrtrain CER | line accuracy | Tesseract CER | line accuracy |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        o = row["ocrtrain"]
        t = row.get("tesseract")
        assert isinstance(o, dict)
        tess = (
            f"{t['cer'] * 100:.2f}% | {t['line_acc'] * 100:.1f}%"
            if isinstance(t, dict)
            else "- | -"
        )
        print(f"| {name} | {o['cer'] * 100:.2f}% | {o['line_acc'] * 100:.1f}% | {tess} |")
    for name, row in rows.items():
        for family, text, read in row.get("errors", []):  # type: ignore[union-attr]
            print(f"{name} [{family}] {text!r} -> {read!r}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
