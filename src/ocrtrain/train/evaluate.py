"""Score a checkpoint on a `labels.tsv` folder: character error rate and line accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_folder(
    ckpt: str | Path, data: str | Path, batch_size: int = 32, num_workers: int = 0
) -> dict[str, Any]:
    """`{"cer", "line_acc", "lines", "chars"}` of the checkpoint on the folder's lines."""
    import torch
    from torch.utils.data import DataLoader

    from ocrtrain.train.data.datamodule import loader_kwargs
    from ocrtrain.train.data.folder import LabelFolder, read_labels
    from ocrtrain.train.data.transforms import collate
    from ocrtrain.train.inference import load_model
    from ocrtrain.train.metrics import TextScore

    read_labels(data)  # a missing or malformed folder is reported before the model is loaded
    model = load_model(ckpt)
    hp = model.hparams
    dataset = LabelFolder(
        data, model.charset, int(hp.height), 2000, float(hp.get("width_scale", 1.0))
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate,
        **loader_kwargs({"num_workers": num_workers, "persistent_workers": False}),
    )
    score = TextScore()
    with torch.inference_mode():
        for b in loader:
            score.update(model.decode(model(b["images"], b["widths"]), b["widths"]), b["texts"])
    return {
        "cer": score.cer,
        "line_acc": score.line_acc,
        "lines": score.lines,
        "chars": score.chars,
    }
