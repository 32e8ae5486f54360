"""Accuracy of a trained checkpoint on held-out-font synthetic lines, per degradation preset.

    .venv/bin/python bench/train_accuracy.py [--ckpt outputs/receipts/latest/checkpoints/best.ckpt]
        [--n 1000] [--presets clean,default,heavy,severe,plain]

The lines are rendered in `data.test_fonts` (never used for training) with a seed no
training run uses, and scored with greedy decoding: CER and exact-line accuracy.
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
from ocrtrain.train.data.transforms import collate
from ocrtrain.train.inference import load_model
from ocrtrain.train.metrics import TextScore

HELD_OUT_SEED = 1_000_003


def score(model: object, dataset: SynthLines) -> tuple[TextScore, float]:
    loader = DataLoader(
        dataset, batch_size=64, collate_fn=collate, **loader_kwargs({"num_workers": 2})
    )
    s = TextScore()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in loader:
            s.update(model.decode(model(b["images"], b["widths"]), b["widths"]), b["texts"])  # type: ignore[attr-defined]
    return s, len(dataset) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="outputs/receipts/latest/checkpoints/best.ckpt")
    parser.add_argument("--n", type=int, default=1000, help="lines per preset")
    parser.add_argument("--presets", default="clean,default,heavy,severe,plain")
    args = parser.parse_args(argv)
    data = OmegaConf.to_container(compose([]).data)
    assert isinstance(data, dict)
    model = load_model(args.ckpt)
    fonts = pick_fonts(data["test_fonts"], data["train_fonts"], "test", model.charset.chars)
    rows = {}
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
        )
        s, lps = score(model, ds)
        rows[preset] = {"cer": s.cer, "line_acc": s.line_acc, "lines": s.lines, "lines_per_s": lps}
    print(f"checkpoint: {Path(args.ckpt)}  held-out fonts: {[Path(f).name for f in fonts]}")
    print("| preset | CER | line accuracy | lines | inference lines/s (incl. rendering) |")
    print("|---|---|---|---|---|")
    for preset, r in rows.items():
        print(
            f"| {preset} | {r['cer'] * 100:.2f}% | {r['line_acc'] * 100:.1f}% | {r['lines']} "
            f"| {r['lines_per_s']:.0f} |"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
