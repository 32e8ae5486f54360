"""The CRNN's layouts agree on the frame count the CTC loss and the decoder assume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ocrtrain.train.models.crnn import CRNN, BiLSTM


@pytest.mark.parametrize("height", [32, 24, 40])
@pytest.mark.parametrize(
    ("stem", "height_pool"), [("pool", "max"), ("stride", "max"), ("stride", "stride")]
)
def test_frames_match_output_lengths(stem: str, height_pool: str, height: int) -> None:
    net = CRNN(
        10,
        height=height,
        channels=(4, 8, 8, 8),
        hidden=8,
        lstm_layers=1,
        stem=stem,
        height_pool=height_pool,
    ).eval()
    for width in (8, 12, 100, 180):  # collate pads batches to a multiple of 4
        widths = torch.tensor([width, max(1, width - 5)])
        with torch.no_grad():
            out = net(torch.zeros(2, 1, height, width), widths)
        # the network pads the batch further, to a multiple of 8 px (cheaper steps)
        padded = -(-width // CRNN.width_multiple) * CRNN.width_multiple
        assert out.shape == (padded // 4, 2, 10)
        assert int(net.output_lengths(widths).max()) == width // 4  # the lines' own frames


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frames_per_column_multiply_the_frames(k: int) -> None:
    """Each 4 px column is scored `k` times, and CTC and decoding count those frames."""
    net = CRNN(10, channels=(4, 8, 8, 8), hidden=8, lstm_layers=1, frames_per_column=k).eval()
    widths = torch.tensor([96, 50])
    with torch.no_grad():
        out = net(torch.rand(2, 1, 32, 96), widths)
    assert out.shape == (96 // 4 * k, 2, 10)
    assert net.output_lengths(widths).tolist() == [24 * k, 13 * k]
    with torch.no_grad():  # a line's frames are its own, whatever else is in the batch
        images = torch.rand(3, 1, 32, 96)
        alone = net(images[1:2])
        assert torch.allclose(net(images)[:, 1:2], alone, atol=1e-5)


def test_filters_are_channels_last_and_plain_state_dicts_load() -> None:
    """The CNN runs channels-last (cheaper on the CPU); weights saved in the plain layout
    (older checkpoints, other tools) load into it and compute the same lines."""
    torch.manual_seed(0)
    net = CRNN(10, channels=(4, 8, 8, 8), hidden=8, lstm_layers=1).eval()
    conv = net.cnn[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = {k: v.contiguous() for k, v in net.state_dict().items()}
    other = CRNN(10, channels=(4, 8, 8, 8), hidden=8, lstm_layers=1).eval()
    other.load_state_dict(plain)
    loaded = other.cnn[0]
    assert isinstance(loaded, nn.Conv2d)
    assert loaded.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(3, 1, 32, 40)
    with torch.no_grad():
        assert torch.allclose(net(images), other(images), atol=1e-5)


def test_unknown_stem_is_refused() -> None:
    with pytest.raises(ValueError, match="stem"):
        CRNN(10, stem="bogus")
    with pytest.raises(ValueError, match="height_pool"):
        CRNN(10, height_pool="bogus")
    with pytest.raises(ValueError, match="height must be at least 16"):
        CRNN(10, height=12)


@pytest.mark.parametrize("layers", [1, 2])
def test_bilstm_matches_a_packed_bidirectional_lstm(layers: int) -> None:
    torch.manual_seed(0)
    ours = BiLSTM(6, 5, layers).eval()
    packed = nn.LSTM(6, 5, num_layers=layers, bidirectional=True).eval()
    with torch.no_grad():
        for i in range(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(packed, f"{name}_l{i}").copy_(getattr(ours.fwd[i], f"{name}_l0"))
                getattr(packed, f"{name}_l{i}_reverse").copy_(getattr(ours.bwd[i], f"{name}_l0"))
        x = torch.randn(9, 3, 6)
        lengths = torch.tensor([9, 4, 6])
        expected, _ = nn.utils.rnn.pad_packed_sequence(
            packed(nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False))[0],
            total_length=9,
        )
        got = ours(x, lengths)
        x[6:, 2] = 100.0  # padding beyond a line's length changes nothing of it
        again = ours(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(got[:n, b], expected[:n, b], atol=1e-5)
        assert torch.allclose(again[:n, b], got[:n, b], atol=1e-6)


@pytest.mark.parametrize("widths_device", ["meta", "cpu"])
def test_forward_stays_on_the_inputs_device(widths_device: str) -> None:
    # "meta" stands in for CUDA: a tensor made on (or copied to) the CPU inside forward fails.
    model = CRNN(num_classes=10, channels=(4, 4, 4, 4), hidden=4).to("meta")
    images = torch.zeros(2, 1, 32, 100, device="meta")
    widths = torch.tensor([100, 60], device=widths_device)
    assert model(images, widths).device.type == "meta"
    assert model(images).device.type == "meta"
