import pytest
import torch

from crnn.models.complexity import count_macs, count_params
from crnn.models.crnn import CRNN, ModelConfig


@pytest.mark.parametrize("hstride", [4, 8])
@pytest.mark.parametrize("width", [16, 37, 100, 320, 801])
def test_output_length_is_width_over_stride(hstride, width):
    m = CRNN(
        ModelConfig(
            channels=[8, 8, 16, 16, 16, 16, 16], hstride=hstride, lstm_hidden=8, lstm_layers=1, num_classes=11
        )
    ).eval()
    with torch.no_grad():
        y = m(torch.zeros(2, 1, 32, width))
    assert y.shape == (2, -(-width // hstride), 11)
    assert m.output_length(width) == y.shape[1]


def test_presets_build_and_counts_are_consistent():
    for channels, hidden, layers in [
        ([16, 32, 64, 64, 96, 96, 128], 64, 1),
        ([64, 128, 256, 256, 512, 512, 512], 256, 2),
    ]:
        cfg = ModelConfig(channels=channels, lstm_hidden=hidden, lstm_layers=layers, num_classes=100)
        m = CRNN(cfg)
        n = count_params(m)
        assert n == sum(p.numel() for p in m.parameters())
        assert count_macs(cfg, 640) > 1.9 * count_macs(cfg, 320)


def test_bad_model_config_is_named():
    with pytest.raises(ValueError, match="hstride"):
        CRNN(ModelConfig(hstride=3, num_classes=5))
    with pytest.raises(ValueError, match="num_classes"):
        CRNN(ModelConfig(num_classes=0))
