"""Accuracy of a trained checkpoint on held-out-font synthetic lines, per text mix and
degradation preset.

    .venv/bin/python bench/train_accuracy.py [--ckpt outputs/receipts/latest/checkpoints/best.ckpt]
        [--n 1000] [--presets clean,default,heavy,severe,plain] [--text basic,receipts]

The lines are rendered in `data.test_fonts` (never used for training) with a seed no
training run uses, and scored as `ocrtrain eval` reads: CER and exact-line accuracy. Text
mixes (`ocrtrain.train.data.text.TEXT_MIXES`): `basic`, item, total, date, code and store
lines, the kinds these figures were first read on; `receipts`, the training mix, which adds
leaders, rules, runs of one character, masked numbers, addresses and paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from ocrtrain.train.config import compose
from ocrtrain.train.data.datamodule import loader_kwargs
from ocrtrain.train.data.fonts import pick_fonts
from ocrtrain.train.data.synth import SynthLines
from ocrtrain.train.data.text import TEXT_MIXES
from ocrtrain.train.data.transforms import collate
from ocrtrain.train.inference import load_model
from ocrtrain.train.lit_module import OCRLitModule
from ocrtrain.train.metrics import TextScore

HELD_OUT_SEED = 1_000_003


def score(model: OCRLitModule, dataset: SynthLines) -> tuple[TextScore, float]:
    loader = DataLoader(
        dataset, batch_size=64, collate_fn=collate, **loader_kwargs({"num_workers": 2})
    )
    s = TextScore()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in loader:
            s.update(model.decode(model(b["images"], b["widths"]), b["widths"]), b["texts"])
    return s, len(dataset) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="outputs/receipts/latest/checkpoints/best.ckpt")
    parser.add_argument("--n", type=int, default=1000, help="lines per preset")
    parser.add_argument("--presets", default="clean,default,heavy,severe,plain")
    parser.add_argument("--text", default="basic,receipts", help="text mixes, comma-separated")
    args = parser.parse_args(argv)
    mixes = args.text.split(",")
    unknown = [m for m in mixes if m not in TEXT_MIXES]
    if unknown:
        print(
            f"unknown text mix(es): {', '.join(unknown)} (known: {', '.join(TEXT_MIXES)})",
            file=sys.stderr,
        )
        return 2
    data = OmegaConf.to_container(compose([]).data)
    assert isinstance(data, dict)
    model = load_model(args.ckpt)
    fonts = pick_fonts(data["test_fonts"], data["train_fonts"], "test", model.charset.chars)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for mix in mixes:
        rows[mix] = {}
        for preset in args.presets.split(","):
            ds = SynthLines(
                model.charset,
                fonts,
                data["degrade_presets"][preset],
                seed=HELD_OUT_SEED,
                size=args.n,
                height=int(model.hparams.height),
                max_width=2000,
                width_scale=float(model.hparams.get("width_scale", 1.0)),
                text_mix=mix,
            )
            s, lps = score(model, ds)
            rows[mix][preset] = {
                "cer": s.cer,
                "line_acc": s.line_acc,
                "lines": s.lines,
                "lines_per_s": lps,
            }
    print(f"checkpoint: {Path(args.ckpt)}  held-out fonts: {[Path(f).name for f in fonts]}")
    print("| text | preset | CER | line accuracy | lines | inference lines/s (incl. rendering) |")
    print("|---|---|---|---|---|---|")
    for mix, by_preset in rows.items():
        for preset, r in by_preset.items():
            print(
                f"| {mix} | {preset} | {r['cer'] * 100:.2f}% | {r['line_acc'] * 100:.1f}% "
                f"| {r['lines']} | {r['lines_per_s']:.0f} |"
            )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
