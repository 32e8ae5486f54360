"""A small DDP trainer (gloo on CPU, 2 DataLoader workers per rank), used by bench/dist_faults.py.

`--launcher torchrun`: a plain DDP loop, what a script started by torchrun does.
`--launcher lightning`: the same model in Lightning, `Trainer(devices=2, strategy="ddp")`, which
starts rank 1 itself. Each rank writes `READY_DIR/RANK.json` with its pid after a few steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset


class Noise(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        return torch.randn(64, generator=g), torch.randn(8, generator=g)


def model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))


def ready(ready_dir: Path, rank: int) -> None:
    tmp = ready_dir / f"{rank}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid()}))
    os.replace(tmp, ready_dir / f"{rank}.json")


def plain(ready_dir: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    net = torch.nn.parallel.DistributedDataParallel(model())
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loader = DataLoader(Noise(), batch_size=16, num_workers=2, persistent_workers=True)
    for step, (x, y) in enumerate(loader, 1):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        if step == 3:
            ready(ready_dir, rank)


def lightning(ready_dir: Path) -> None:
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model()

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> torch.Tensor:
            if self.global_step == 3:
                ready(ready_dir, self.global_rank)
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1000,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(Noise(), batch_size=16, num_workers=2, persistent_workers=True)
    trainer.fit(Module(), loader)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--launcher", choices=["torchrun", "lightning"], required=True)
    p.add_argument("--ready-dir", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    (plain if args.launcher == "torchrun" else lightning)(args.ready_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
