"""`ocrtrain train | predict | eval | data synth`: the training area's subcommands.

Torch, Lightning and Hydra are imported inside the handlers so `ocrtrain run` and `ps` stay
fast. `ocrtrain train` hands itself to the supervisor like `runners/train.py` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ocrtrain.procman import UsageError
from ocrtrain.train.info import CFG_KINDS


def register(subparsers: Any) -> None:
    """Add this area's subcommands to the `ocrtrain` parser."""
    p = subparsers.add_parser(
        "train",
        help="train the recognizer (supervised); takes Hydra overrides, e.g. debug=smoke",
        add_help=False,  # its --help lists the config groups (ocrtrain.train.info)
    )
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-c", "--cfg", choices=CFG_KINDS)
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="key=value Hydra overrides")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("predict", help="read the text of line images")
    p.add_argument("--ckpt", required=True, help="checkpoint written by training")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser(
        "eval", help="CER and line accuracy on a labels.tsv folder or fresh synthetic lines"
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by training")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="folder with labels.tsv and the images")
    what.add_argument(
        "--synth",
        type=int,
        metavar="N",
        help="N synthetic receipt lines in held-out fonts (as `data synth --fonts test`)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("data", help="datasets for training and evaluation")
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND", parser_class=type(p))
    sub.required = True
    s = sub.add_parser("synth", help="write synthetic receipt lines as a labels.tsv folder")
    s.add_argument("--out", required=True, help="new (or empty) output folder")
    s.add_argument("--n", type=int, required=True, help="number of lines")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--fonts", default="test", help="'train', 'test' (held-out) or comma-separated font files"
    )
    s.add_argument(
        "--degrade", default="default", help="preset: clean, default, heavy, severe or plain"
    )
    s.set_defaults(func=cmd_data_synth)


def cmd_train(args: argparse.Namespace) -> int:
    from ocrtrain.dist.launch import launch_job
    from ocrtrain.procman import ensure_supervised
    from ocrtrain.train.info import answer_without_training

    overrides = [o for o in args.overrides if o != "--"]
    asked = ["--help"] if args.help else ["--cfg", args.cfg] if args.cfg else []
    code = answer_without_training([*asked, *overrides], "ocrtrain train")
    if code is not None:
        return code
    launch_job("train", overrides, ["-m", "ocrtrain.train"], grace=30)  # dist.nnodes=...
    ensure_supervised("train", ["-m", "ocrtrain.train", *overrides], grace=30)
    from ocrtrain.train.train import main

    return main(overrides)


def cmd_predict(args: argparse.Namespace) -> int:
    from ocrtrain.train.predict import predict_images

    texts = predict_images(args.ckpt, args.images)
    for path, text in zip(args.images, texts, strict=True):
        print(f"{path}\t{text}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ocrtrain.train.evaluate import evaluate_folder

    if args.workers < 0:
        raise UsageError(f"--workers must be at least 0, not {args.workers}")
    if args.synth is None:
        result = evaluate_folder(args.ckpt, args.data, num_workers=args.workers)
    else:
        if args.synth < 1:
            raise UsageError(f"--synth must be at least 1, not {args.synth}")
        with tempfile.TemporaryDirectory(prefix="ocrtrain-eval-") as tmp:
            write_synth(Path(tmp) / "lines", args.synth, seed=0, fonts="test", degrade="default")
            result = evaluate_folder(args.ckpt, Path(tmp) / "lines", num_workers=args.workers)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CER {result['cer']:.4f} line_acc {result['line_acc']:.4f}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    out = write_synth(args.out, args.n, args.seed, args.fonts, args.degrade)
    print(f"wrote {args.n} lines to {out}", file=sys.stderr)
    return 0


def write_synth(out: str | Path, n: int, seed: int, fonts: str, degrade: str) -> Path:
    """Write `n` synthetic lines as a labels.tsv folder; `fonts` is 'train', 'test' or a
    comma-separated list of font files, `degrade` a preset of `data.degrade_presets`."""
    from omegaconf import OmegaConf

    from ocrtrain.train.config import compose
    from ocrtrain.train.data.charset import Charset
    from ocrtrain.train.data.export import write_synth_folder
    from ocrtrain.train.data.fonts import pick_fonts, usable_fonts

    data = OmegaConf.to_container(compose([]).data)
    assert isinstance(data, dict)
    presets = data["degrade_presets"]
    if degrade not in presets:
        raise UsageError(f"--degrade must be one of {', '.join(presets)}, not {degrade!r}")
    chars = Charset(data["charset"]).chars
    if fonts in ("train", "test"):
        chosen = pick_fonts(data[f"{fonts}_fonts"], data["train_fonts"], fonts, chars)
    else:  # fonts the user named: never silently replaced by others
        names = [f.strip() for f in fonts.split(",") if f.strip()]
        chosen = usable_fonts(names, "--fonts", chars, warn_missing=True)
        if not chosen:
            raise UsageError(
                f"--fonts: none of {', '.join(names) or '(empty)'} is an installed font that "
                "can draw the charset"
            )
    return write_synth_folder(out, n, chosen, presets[degrade], seed=seed, charset=data["charset"])
