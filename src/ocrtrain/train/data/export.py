"""Write synthetic lines as a `labels.tsv` folder (the format `kind: folder` reads)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.render import Degrade
from ocrtrain.train.data.synth import synth_image
from ocrtrain.train.errors import DataError


def write_synth_folder(
    out: str | Path,
    n: int,
    fonts: Sequence[str],
    degrade: Mapping[str, Any] | None = None,
    seed: int = 0,
    charset: str | None = None,
    max_chars: int = 40,
) -> Path:
    """Render `n` lines into `out/images/` with `out/labels.tsv`; all or nothing.

    The folder is built next to `out` under a temporary name and renamed into place, so an
    interrupted export never leaves a half-written dataset at `out`.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise DataError(f"output folder exists and is not empty: {out}")
    if n < 1:
        raise DataError("--n must be at least 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    deg = Degrade(**dict(degrade or {}))
    cs = Charset(charset)
    try:
        (tmp / "images").mkdir(parents=True)
        rows = []
        for i in range(n):
            img, text = synth_image(i, seed, fonts, deg, cs, max_chars)
            rel = f"images/{i:06d}.png"
            img.save(tmp / rel)
            rows.append(f"{rel}\t{text}\n")
        (tmp / "labels.tsv").write_text("".join(rows), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
