"""Tesseract's CER on the held-out lines that bench/train_accuracy.py scores ocrtrain on.

    .venv/bin/python bench/tesseract_reference.py [--n 200]
        [--presets clean,default,heavy,severe,plain]

A reference point for the degradation presets, not a dependency: it needs the `tesseract`
command (Debian: `apt-get install tesseract-ocr tesseract-ocr-eng`) and says so when it is
missing. Each line is read at its rendered size with `--psm 7` (one text line), `-l eng`;
runs of whitespace in the output count as one space, as in ocrtrain's labels.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf
from train_accuracy import HELD_OUT_SEED

from ocrtrain.train.config import compose
from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.fonts import pick_fonts
from ocrtrain.train.data.render import Degrade
from ocrtrain.train.data.synth import synth_image
from ocrtrain.train.data.text import TEXT_MIXES
from ocrtrain.train.metrics import TextScore


def read_line(exe: str, image: Path, lang: str) -> str:
    """Tesseract's reading of one line image, whitespace runs collapsed."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # parallelism comes from the thread pool
    out = subprocess.run(
        [exe, str(image), "stdout", "--psm", "7", "-l", lang],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    ).stdout
    return re.sub(r"\s+", " ", out).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="lines per preset")
    parser.add_argument("--presets", default="clean,default,heavy,severe,plain")
    parser.add_argument("--lang", default="eng")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--text", default="receipts", choices=sorted(TEXT_MIXES))
    args = parser.parse_args(argv)
    exe = shutil.which("tesseract")
    if exe is None:
        print("tesseract not found: install tesseract-ocr to run this reference", file=sys.stderr)
        return 1
    data = OmegaConf.to_container(compose([]).data)
    assert isinstance(data, dict)
    unknown = [p for p in args.presets.split(",") if p not in data["degrade_presets"]]
    if unknown:
        print(f"unknown preset(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    charset = Charset(data["charset"])
    fonts = pick_fonts(data["test_fonts"], data["train_fonts"], "test", charset.chars)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        for preset in args.presets.split(","):
            deg = Degrade(**data["degrade_presets"][preset])
            paths, texts = [], []
            for i in range(args.n):  # the lines of SynthLines(seed=HELD_OUT_SEED), as images
                img, text = synth_image(i, HELD_OUT_SEED, fonts, deg, charset, 40, args.text)
                path = Path(tmp) / f"{preset}-{i}.png"
                img.save(path)
                paths.append(path)
                texts.append(text)
            score = TextScore()
            score.update(list(pool.map(lambda p: read_line(exe, p, args.lang), paths)), texts)
            rows[preset] = {"cer": score.cer, "line_acc": score.line_acc, "lines": score.lines}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    name = version.splitlines()[0] if version else "tesseract"
    print(f"{name} (--psm 7, -l {args.lang}), {args.text} text")
    print("| preset | Tesseract CER | line accuracy | lines |")
    print("|---|---|---|---|")
    for preset, r in rows.items():
        print(f"| {preset} | {r['cer'] * 100:.1f}% | {r['line_acc'] * 100:.1f}% | {r['lines']} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
