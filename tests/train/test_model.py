"""The CRNN's layouts agree on the frame count the CTC loss and the decoder assume."""

from __future__ import annotations

import pytest
import torch

from ocrtrain.train.models.crnn import CRNN


@pytest.mark.parametrize("stem", ["pool", "stride"])
def test_frames_match_output_lengths(stem: str) -> None:
    net = CRNN(10, height=32, channels=(4, 8, 8, 8), hidden=8, lstm_layers=1, stem=stem).eval()
    for width in (8, 12, 100, 180):  # collate pads batches to a multiple of 4
        widths = torch.tensor([width, max(1, width - 5)])
        with torch.no_grad():
            out = net(torch.zeros(2, 1, 32, width), widths)
        assert out.shape == (width // 4, 2, 10)
        assert int(CRNN.output_lengths(widths).max()) == out.shape[0]


def test_unknown_stem_is_refused() -> None:
    with pytest.raises(ValueError, match="stem"):
        CRNN(10, stem="bogus")
