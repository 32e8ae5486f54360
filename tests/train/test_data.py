"""Data: charset, reproducible synthetic lines, labels.tsv folders and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ocrtrain.train.data.charset import PRINTABLE_ASCII, Charset
from ocrtrain.train.data.datamodule import KeptSamples, OCRDataModule
from ocrtrain.train.data.export import write_synth_folder
from ocrtrain.train.data.folder import LabelFolder
from ocrtrain.train.data.fonts import BUNDLED, missing_glyphs, pick_fonts, resolve_fonts
from ocrtrain.train.data.render import Degrade
from ocrtrain.train.data.synth import EpochSampler, SynthLines, WidthBuckets, synth_image
from ocrtrain.train.data.text import label_of
from ocrtrain.train.data.transforms import collate, read_line_image, to_tensor, trim_margins
from ocrtrain.train.errors import ConfigError, DataError
from ocrtrain.train.metrics import TextScore, edit_distance


def test_charset_roundtrip_and_ctc_collapse() -> None:
    cs = Charset()
    assert len(cs) == len(PRINTABLE_ASCII) == 95
    ids = cs.encode("TOTAL $12.30")
    assert 0 not in ids
    assert cs.decode(ids) == "TOTAL $12.30"
    a, b = cs.encode("a")[0], cs.encode("b")[0]
    assert cs.ctc_greedy([0, a, a, 0, a, b, b, 0]) == "aab"
    with pytest.raises(ValueError, match="é"):
        cs.encode("café")


def test_synthetic_lines_are_reproducible_and_varied() -> None:
    cs = Charset()
    img1, t1 = synth_image(7, 3, ["pillow"], Degrade(), cs, 40)
    img2, t2 = synth_image(7, 3, ["pillow"], Degrade(), cs, 40)
    assert t1 == t2 and img1.tobytes() == img2.tobytes()
    texts = {synth_image(i, 3, ["pillow"], Degrade(), cs, 40)[1] for i in range(50)}
    assert len(texts) > 45
    assert all(0 < len(t) <= 40 and not cs.unknown(t) for t in texts)


def test_degraded_lines_go_down_to_low_resolution() -> None:
    cs = Charset()
    heavy = Degrade(height_min=14, height_max=16)
    heights = {synth_image(i, 0, ["pillow"], heavy, cs, 40)[0].height for i in range(20)}
    assert min(heights) <= 17


CLEAN = Degrade(height_min=30, height_max=40, rotate_max=0.0, blur_p=0.0, noise_p=0.0, jpeg_p=0.0)
HEAVY = Degrade(height_min=14, height_max=18, rotate_max=2.0, blur_p=1.0, noise_p=1.0, jpeg_p=1.0)


@pytest.mark.parametrize("deg", [CLEAN, Degrade(), HEAVY], ids=["clean", "default", "heavy"])
def test_trim_margins_leaves_synthetic_lines_as_they_are(deg: Degrade) -> None:
    """Tight lines keep their width and nearly all their height: a short all-caps line in
    Pillow's bundled font (tall line metrics) may lose a little paper above and below."""
    cs = Charset()
    for i in range(40):
        img, _ = synth_image(i, 5, ["pillow"], deg, cs, 40)
        out = trim_margins(img)
        assert out.width == img.width and out.height >= 0.7 * img.height, i


def test_trim_margins_cuts_wide_paper_margins_and_keeps_all_ink() -> None:
    cs = Charset()
    for i in range(10):
        img, _ = synth_image(i, 6, ["pillow"], CLEAN, cs, 40)
        paper = int(np.median(np.asarray(img)[0]))
        padded = ImageOps.expand(img, border=(80, 40, 80, 40), fill=paper)
        out = trim_margins(padded)
        assert out.height < padded.height - 40 and out.width < padded.width - 80, i

        dark = paper - 60
        assert (np.asarray(out) < dark).sum() == (np.asarray(padded) < dark).sum() > 0, i


def _framed_line(text: str, px: int) -> Image.Image:
    """`text` as a line-segmenting tool crops it: the font's full line height, a small margin."""
    font = ImageFont.load_default(size=px)
    ascent, descent = font.getmetrics()
    img = Image.new("L", (round(font.getlength(text)) + px, ascent + descent + px // 2), 240)
    ImageDraw.Draw(img).text((px // 2, px // 4), text, font=font, fill=20)
    return img


@pytest.mark.parametrize(
    "text",
    [
        *("=" * 24, ":" * 16 + " 61", "~" * 20, "_" * 20 + " Total", "." * 30),
        *("*" * 20, "+ " * 12, "#" * 16, "======= END ======="),
    ],
)
@pytest.mark.parametrize("px", [11, 17, 19, 28])
def test_trim_margins_leaves_rules_and_their_thin_strokes_whole(text: str, px: int) -> None:
    """A rule alone on its line has no letter to tell its scale: cut to its ink, `=====` or
    `*****` would be resized into giant bars or stars. In small lines its strokes are 1 px
    thin, and a cut beside them must not drop them (`======= END =======` read as `END`)."""
    img = _framed_line(text, px)
    out = trim_margins(img)
    assert (np.asarray(out) < 128).sum() == (np.asarray(img) < 128).sum()
    if not any(c.isalnum() for c in text):
        assert out.size == img.size


def test_image_files_are_read_dark_on_light(tmp_path: Path) -> None:
    img, _ = synth_image(2, 6, ["pillow"], CLEAN, Charset(), 40)
    variants = {
        "plain.png": img,
        "inverted.png": ImageOps.invert(img),  # light text on a dark ground
        "rgb.jpg": img.convert("RGB"),
        # black text on a transparent canvas: alpha is the ink
        "transparent.png": Image.merge(
            "RGBA", [Image.new("L", img.size, 0)] * 3 + [ImageOps.invert(img)]
        ),
    }
    tensors = {}
    for name, im in variants.items():
        im.save(tmp_path / name, quality=95)
        tensors[name] = read_line_image(tmp_path / name, 32, 800)
    plain = tensors.pop("plain.png")
    for name, t in tensors.items():
        assert t.shape == plain.shape, name
        assert float((t - plain).abs().mean()) < 0.02, name


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_grayscale_images_are_scaled_not_clipped(tmp_path: Path, mode: str) -> None:
    img, _ = synth_image(2, 6, ["pillow"], CLEAN, Charset(), 40)
    a = np.asarray(img, dtype=np.float64)
    wide = {"I;16": a * 257, "I": a * 257, "F": a / 255}[mode]
    im = Image.fromarray(wide.astype(np.uint16 if mode == "I;16" else np.float32))
    if mode == "I":
        im = im.convert("I")
    path = tmp_path / ("line.png" if mode == "I;16" else "line.tif")
    im.save(path)
    assert Image.open(path).mode == mode
    got = read_line_image(path, 32, 800)
    assert float((got - read_line_image(_saved(img, tmp_path), 32, 800)).abs().mean()) < 0.02


def _saved(img: Image.Image, folder: Path) -> Path:
    path = folder / "plain.png"
    img.save(path)
    return path


def test_contrast_is_normalized_per_line() -> None:
    img, _ = synth_image(4, 6, ["pillow"], CLEAN, Charset(), 40)
    a = np.asarray(img, dtype=np.float32)
    ink, paper = a.min(), np.percentile(a, 90)
    full = Image.fromarray(np.clip((a - ink) / (paper - ink) * 255, 0, 255).astype(np.uint8))
    faded = Image.fromarray((150 + (a - ink) / (paper - ink) * 70).clip(0, 255).astype(np.uint8))
    t_full, t_faded = to_tensor(full, 32, 800), to_tensor(faded, 32, 800)
    assert float(t_full.max()) == pytest.approx(1.0) and float(t_faded.max()) == pytest.approx(1.0)
    assert float((t_full - t_faded).abs().mean()) < 0.03
    blank = to_tensor(Image.new("L", (60, 20), 230), 32, 800)
    assert float(blank.max()) < 0.11  # no ink: nothing is stretched up


def test_native_lines_are_drawn_at_their_final_height() -> None:
    cs = Charset()
    native = Degrade(height_min=14, height_max=16, rotate_max=0.0, native_p=1.0)
    heights = [synth_image(i, 0, [BUNDLED], native, cs, 40)[0].height for i in range(20)]
    assert all(12 <= h <= 18 for h in heights), heights
    mixed = Degrade(native_p=0.5)
    plain = Degrade()
    # the share draws from each line's own RNG: lines of presets without it are unchanged
    assert synth_image(3, 0, [BUNDLED], plain, cs, 40)[0].tobytes() == (
        synth_image(3, 0, [BUNDLED], Degrade(native_p=0.0), cs, 40)[0].tobytes()
    )
    assert {synth_image(i, 0, [BUNDLED], mixed, cs, 40)[1] for i in range(8)} == {
        synth_image(i, 0, [BUNDLED], plain, cs, 40)[1] for i in range(8)
    }


def test_batches_pad_to_the_widest_line() -> None:
    ds = SynthLines(Charset(), ["pillow"], Degrade(), seed=0, size=4, height=32, max_width=400)
    batch = collate([ds[i] for i in range(4)])
    assert batch["images"].shape[:3] == (4, 1, 32)
    assert batch["images"].shape[3] % 4 == 0
    assert int(batch["target_lengths"].sum()) == len(batch["targets"])


def test_width_buckets_pad_little() -> None:
    """Lines sorted by their planned aspect (known before rendering) pad little: a batch's
    padded width stays close to its lines' mean width, and far below what text length gives."""
    fonts = [BUNDLED, *resolve_fonts(["DejaVuSansMono.ttf", "LiberationSansNarrow-Regular.ttf"])]
    ds = SynthLines(Charset(), fonts, Degrade(stretch_max=0.25, native_p=0.25), seed=3,
                    size=None, height=32, max_width=2000)  # fmt: skip
    widths = {i: ds[i][0].shape[-1] for i in range(256)}
    planned = [ds.aspect(i) * 32 for i in range(256)]
    ratios = sorted(p / widths[i] for i, p in enumerate(planned))
    assert ratios[len(ratios) // 10] > 0.9 and ratios[-len(ratios) // 10] < 1.1, ratios
    sampler = EpochSampler(256)
    batches = list(WidthBuckets(sampler, 16, ds.aspect, bucket_batches=16, seed=0))
    assert sorted(i for b in batches for i in b) == list(range(256))
    padded = sum(max(widths[i] for i in b) * len(b) for b in batches)
    assert padded / sum(widths.values()) < 1.15
    by_text = WidthBuckets(sampler, 16, lambda i: len(ds[i][1]), bucket_batches=16, seed=0)
    assert sum(max(widths[i] for i in b) * len(b) for b in by_text) > padded


def test_a_cached_split_makes_each_line_once() -> None:
    """`cache: true` (the validation split): the persistent worker renders each line at the
    first validation only and serves the same samples afterwards."""
    spec = {"kind": "synth", "seed": 2, "size": 6, "fonts": [BUNDLED], "cache": True}
    dm = OCRDataModule(train_fonts=[BUNDLED], val=spec, test={**spec, "cache": False})
    val, test = dm.datasets["val"], dm.datasets["test"]
    assert isinstance(val, KeptSamples) and isinstance(test, SynthLines)
    first = val[3]
    assert val[3] is first  # kept, not made again
    image, text, _ = first
    again, text_again, _ = test[3]  # the same line, made afresh
    assert text == text_again and torch.equal(image, again)
    assert len(val) == 6


def test_epoch_sampler_gives_fresh_indices_per_epoch() -> None:
    s = EpochSampler(5)
    s.set_epoch(2)
    assert list(s) == [10, 11, 12, 13, 14]


def test_metrics() -> None:
    assert edit_distance("kitten", "sitting") == 3
    score = TextScore()
    score.update(["abc", "xyz"], ["abd", "xyz"])
    assert score.cer == pytest.approx(1 / 6)
    assert score.line_acc == 0.5


def test_synth_folder_export_and_load(tmp_path: Path) -> None:
    out = write_synth_folder(tmp_path / "ds", 6, ["pillow"], seed=1)
    rows = (out / "labels.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 6 and all("\t" in r for r in rows)
    ds = LabelFolder(out, Charset(), 32, 800)
    image, text, _labels = ds[0]
    assert image.shape[1] == 32 and text == rows[0].split("\t", 1)[1]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp folder left


def test_synth_export_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        write_synth_folder(tmp_path / "ds", 2, ["pillow"])


def _folder(tmp_path: Path, label: str, image_bytes: bytes | None = None) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    path = root / "a.png"
    if image_bytes is None:
        Image.new("L", (40, 20), 255).save(path)
    else:
        path.write_bytes(image_bytes)
    (root / "labels.tsv").write_text(f"a.png\t{label}\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("label", "image", "message"),
    [
        ("naïve", None, "outside the charset"),
        ("ok", b"not an image", "unreadable image"),
    ],
)
def test_folder_errors_name_the_problem(
    tmp_path: Path, label: str, image: bytes | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        LabelFolder(_folder(tmp_path, label, image), Charset(), 32, 800)


def test_missing_folder_and_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        LabelFolder(tmp_path / "nope", Charset(), 32, 800)
    with pytest.raises(DataError, match=r"no labels\.tsv"):
        LabelFolder(tmp_path, Charset(), 32, 800)


def test_curriculum_cuts_the_first_lines_only() -> None:
    ds = SynthLines(
        Charset(), ["pillow"], Degrade(), seed=5, size=None, height=32, max_width=800,
        short_samples=30, short_chars=8,
    )  # fmt: skip
    assert all(len(ds[i][1]) <= 8 for i in range(30))
    assert max(len(ds[i][1]) for i in range(30, 90)) > 8
    assert [ds[i][1] for i in (3, 40)] == [ds[i][1] for i in (3, 40)]  # still f(index, seed)


def test_fonts_without_a_glyph_of_the_charset_are_left_out() -> None:
    installed = resolve_fonts(["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "FreeSans.ttf"])
    if not installed:
        pytest.skip("no TrueType font installed")
    font = installed[0]
    assert missing_glyphs(font, PRINTABLE_ASCII) == ""
    assert missing_glyphs(font, "a\u4e2d") == "\u4e2d"  # no CJK in these fonts
    assert pick_fonts([font], [], "test", PRINTABLE_ASCII) == [font]
    assert pick_fonts([font], [], "test", "a\u4e2d") == [BUNDLED]


def test_an_unreadable_font_file_is_left_out(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font")
    assert pick_fonts([str(bad)], [], "train", PRINTABLE_ASCII) == [BUNDLED]


def test_labels_count_a_gap_as_one_space() -> None:
    assert label_of("TOTAL      12.50  A") == "TOTAL 12.50 A"
    cs = Charset()
    labels = [synth_image(i, 5, ["pillow"], Degrade(), cs, 40)[1] for i in range(200)]
    assert all("  " not in t and t == t.strip() for t in labels)


def test_the_basic_text_mix_leaves_out_leaders_rules_and_runs() -> None:
    cs = Charset()
    run = re.compile(r"([._=~#+-])\1{3}")  # a leader or rule (masked `****` are codes)
    basic = [synth_image(i, 5, ["pillow"], Degrade(), cs, 40, "basic")[1] for i in range(300)]
    receipts = [synth_image(i, 5, ["pillow"], Degrade(), cs, 40)[1] for i in range(300)]
    assert not any(run.search(t) for t in basic)
    assert sum(bool(run.search(t)) for t in receipts) > 10
    with pytest.raises(ValueError, match="text mix 'other'"):
        SynthLines(cs, ["pillow"], Degrade(), 0, 4, 32, 400, text_mix="other")


def test_lines_are_drawn_under_each_preset_of_a_list() -> None:
    cs = Charset()
    small = {"height_min": 14, "height_max": 16, "rotate_max": 0.0, "native_p": 1.0}
    large = {**small, "height_min": 38, "height_max": 40}
    ds = SynthLines(cs, [BUNDLED], [small, large, large], 0, 60, 32, 2000)
    assert isinstance(ds.degrade, tuple) and len(ds.degrade) == 3
    heights = [synth_image(i, 0, [BUNDLED], ds.degrade, cs, 40)[0].height for i in range(60)]
    assert 10 < sum(h < 20 for h in heights) < 30 and sum(h > 34 for h in heights) > 30
    alone = SynthLines(cs, [BUNDLED], [small], 0, 4, 32, 400)
    assert alone.degrade == Degrade(**small)  # one preset in a list: lines as without the list
    for bad, message in (([], "empty list"), ([{"blur": 1}], "unexpected keyword")):
        with pytest.raises(ConfigError, match=f"data.train.degrade: .*{message}"):
            OCRDataModule(train_fonts=[BUNDLED], train={"degrade": bad})
