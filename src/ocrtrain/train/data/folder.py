"""A folder of line images with `labels.tsv` (`relative/path.png<TAB>text`, UTF-8).

Everything is checked when the dataset is built (folder, label syntax, charset, images), so
a bad folder is one clear error before any training or output starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ocrtrain.train.data.charset import Charset
from ocrtrain.train.data.transforms import Sample, read_line_image
from ocrtrain.train.errors import DataError

log = logging.getLogger(__name__)

LABELS = "labels.tsv"


def read_labels(root: str | Path) -> list[tuple[Path, str]]:
    """(image path, text) pairs of a `labels.tsv` folder; raises DataError naming the problem."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    labels = root / LABELS
    if not labels.is_file():
        raise DataError(f"no {LABELS} in data folder {root}")
    pairs: list[tuple[Path, str]] = []
    try:
        lines = labels.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {labels}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rel, sep, text = line.partition("\t")
        if not sep or not rel:
            raise DataError(f"{labels}:{n}: expected 'relative/path<TAB>text'")
        pairs.append((root / rel, text))
    if not pairs:
        raise DataError(f"{labels} lists no images")
    return pairs


def check_image(path: Path) -> None:
    """Raise DataError unless `path` is an image Pillow can decode."""
    try:
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError as exc:
        raise DataError(f"image not found: {path}") from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image: {path} ({exc})") from exc


class LabelFolder(Dataset[Sample]):
    """The images and texts of a `labels.tsv` folder, validated up front."""

    def __init__(
        self,
        root: str | Path,
        charset: Charset,
        height: int,
        max_width: int,
        width_scale: float = 1.0,
    ) -> None:
        self.items = read_labels(root)
        self.charset = charset
        self.height = height
        self.max_width = max_width
        self.width_scale = width_scale
        for path, text in self.items:
            bad = charset.unknown(text)
            if bad:
                raise DataError(f"label of {path} has characters outside the charset: {bad!r}")
            check_image(path)
        log.info("%s: %d labelled lines", root, len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        path, text = self.items[index]
        tensor = read_line_image(path, self.height, self.max_width, self.width_scale)
        return tensor, text, self.charset.encode(text)
