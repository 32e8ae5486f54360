"""CRNN: a small CNN turns a 32 px line into a sequence of column features, a BiLSTM reads it,
and a linear layer scores the charset plus the CTC blank at every column (width / 4), or at
`frames_per_column` frames of each column.

Why more than one frame a column: CTC needs a blank frame between two equal characters, so a
run of n narrow glyphs (`....`, `llll`, `xxxx`) needs 2n - 1 frames. A `.` or `l` is ~6-7 px
wide at the model's 32 px line height, 1.5-1.8 columns of 4 px: too few, and runs collapse
(`xxxx5487` read as `x5487`). Two frames a column give every glyph 3 or more, for the cost of
a wider head (the CNN and the BiLSTM still run at width / 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(
    cin: int, cout: int, pool: tuple[int, int] | None, stride: int | tuple[int, int] = 1
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(pool, pool))
    return layers


def reverse_within(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, B) gather indices that reverse each sequence within its own length.

    Positions past a sequence's length map to themselves, so its padding stays at the end.
    """
    t = torch.arange(steps, device=lengths.device)[:, None]
    n = lengths.to(t.device)[None, :]
    return torch.where(t < n, n - 1 - t, t)


class BiLSTM(nn.Module):
    """A bidirectional LSTM over right-padded sequences, without packing.

    The backward direction reads each sequence reversed within its own length, so it starts
    at the line's last real frame, never in the padding: the same result as a packed
    `nn.LSTM(bidirectional=True)`, but each direction is a plain (unpacked) LSTM, which
    runs about twice as fast on the CPU.
    """

    def __init__(self, size: int, hidden: int, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(n, hidden) for n in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(n, hidden) for n in sizes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(T, B, size) -> (T, B, 2 * hidden); `lengths` (B,) are the real frames per line."""
        steps, batch = x.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
        index = reverse_within(lengths.to(x.device), steps)[:, :, None]
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i:
                x = self.drop(x)
            ahead, _ = fwd(x)
            back, _ = bwd(x.gather(0, index.expand(-1, -1, x.shape[2])))
            back = back.gather(0, index.expand(-1, -1, back.shape[2]))
            x = torch.cat([ahead, back], dim=2)
        return x


class CRNN(nn.Module):
    """CNN + BiLSTM + linear; `forward` returns logits shaped (T, B, num_classes)."""

    downsample = 4  # width reduction: two (2, 2) pools or strides, the others pool height only
    # Inputs are padded on the right to a multiple of this many pixels: a CPU training step
    # costs ~10-15% less per pixel on such widths than on other multiples of 4 (oneDNN's
    # convolutions above all; docs/training.md, Throughput), far more than the padding adds.
    width_multiple = 8

    def __init__(
        self,
        num_classes: int,
        height: int = 32,
        channels: Sequence[int] = (32, 64, 128, 128),
        hidden: int = 128,
        lstm_layers: int = 2,
        dropout: float = 0.1,
        stem: str = "pool",
        height_pool: str = "max",
        frames_per_column: int = 1,
    ) -> None:
        """`stem="stride"`: the first two convolutions have stride 2 instead of being followed
        by a (2, 2) max-pool: the same output shape for ~25% less CPU per line (no full-
        resolution conv, batch norm and pool). `"pool"` is the original layout (old checkpoints).

        `height_pool="stride"`: the last two convolutions halve the height with a (2, 1) stride
        instead of a (2, 1) max-pool after them: they compute half the rows, and no pool runs.
        `"max"` is the original layout (old checkpoints).

        `height`: at least 16 px; the four height halvings leave `out_height` rows of features.

        `frames_per_column`: CTC frames scored per 4 px feature column (1: the original
        layout, old checkpoints; 2: enough frames for runs of the narrowest glyphs).
        """
        super().__init__()
        if height < 16:
            raise ValueError("height must be at least 16")
        if stem not in ("pool", "stride"):
            raise ValueError("stem must be 'pool' or 'stride'")
        if height_pool not in ("max", "stride"):
            raise ValueError("height_pool must be 'max' or 'stride'")
        if frames_per_column < 1:
            raise ValueError("frames_per_column must be at least 1")
        self.frames_per_column = frames_per_column
        c1, c2, c3, c4 = channels
        pools: list[tuple[int, int]] = [(2, 2), (2, 2), (2, 1), (2, 1)]
        first = (
            [*_block(1, c1, pools[0]), *_block(c1, c2, pools[1])]
            if stem == "pool"
            else [*_block(1, c1, None, stride=2), *_block(c1, c2, None, stride=2)]
        )
        last = (
            [*_block(c3, c3, pools[2]), *_block(c3, c4, pools[3])]
            if height_pool == "max"
            else [*_block(c3, c3, None, stride=(2, 1)), *_block(c3, c4, None, stride=(2, 1))]
        )
        # Channels-last filters (and inputs, in `forward`): oneDNN's convolutions then skip a
        # layout reorder each way: ~18% less CPU per training step in isolation (bfloat16
        # and float32; a 2-core run, sharing the CPU with its loader workers, gains less).
        self.cnn = nn.Sequential(*first, *_block(c2, c3, None), *last).to(
            memory_format=torch.channels_last  # type: ignore[call-overload]
        )
        feat = c4 * self.out_height(height, stem, height_pool)
        self.proj = nn.Linear(feat, hidden)
        self.rnn = BiLSTM(hidden, hidden, lstm_layers, dropout if lstm_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes * frames_per_column)

    def forward(self, images: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (T, B, C); the BiLSTM ignores each line's right padding (`widths`: the
        lines' own widths in pixels; None: the batch's width). T is the padded width / 4
        times `frames_per_column`.

        If the backward direction started in the padding, a model trained on length-bucketed
        (little-padded) batches would fail on mixed-length batches.
        """
        if widths is None:  # every line is as wide as the batch: none of it is padding
            widths = torch.full((images.shape[0],), images.shape[3], device=images.device)
        pad = -images.shape[3] % self.width_multiple
        if pad:
            images = F.pad(images, (0, pad))
        f = self.cnn(images.contiguous(memory_format=torch.channels_last))  # B, C, H', W/4
        b, c, h, w = f.shape
        f = f.permute(3, 0, 1, 2).reshape(w, b, c * h)
        f = torch.relu(self.proj(f))
        lengths = self.columns(widths).clamp(1, w)
        logits: torch.Tensor = self.head(self.drop(self.rnn(f, lengths)))  # w, b, k * C
        k = self.frames_per_column
        if k == 1:
            return logits
        frames: torch.Tensor = logits.view(w, b, k, -1).transpose(1, 2)  # frames tk..tk+k-1
        return frames.reshape(w * k, b, -1)

    @staticmethod
    def out_height(height: int, stem: str = "pool", height_pool: str = "max") -> int:
        """Feature rows left after the CNN: a 3x3 stride-2 convolution keeps ceil(h / 2) rows,
        a max-pool floor(h / 2)."""
        for strided in (stem == "stride",) * 2 + (height_pool == "stride",) * 2:
            height = -(-height // 2) if strided else height // 2
        return height

    @classmethod
    def columns(cls, widths: torch.Tensor) -> torch.Tensor:
        """Feature columns per image of the given pixel widths."""
        return torch.div(widths + cls.downsample - 1, cls.downsample, rounding_mode="floor")

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        """CTC frames per image of the given pixel widths."""
        return self.columns(widths) * self.frames_per_column
