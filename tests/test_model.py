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


def test_a_depthwise_separable_model_counts_what_it_builds():
    """The mobile preset's MAC count follows its layers: depthwise 3x3 + pointwise 1x1 after the first."""
    cfg = ModelConfig(channels=[8, 16, 16, 32, 32, 32, 32], lstm_hidden=8, lstm_layers=1, num_classes=11)
    mobile = ModelConfig(**{**cfg.as_dict(), "block": "dwsep"})
    m = CRNN(mobile)
    convs = [c for c in m.features.modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 6 and sum(c.groups > 1 for c in convs) == 6
    macs, traced = 0, []
    hooks = [c.register_forward_hook(lambda mod, i, o: traced.append(o.shape)) for c in convs]
    with torch.no_grad():
        m.eval()(torch.zeros(1, 1, 32, 320))
    for h in hooks:
        h.remove()
    for c, shape in zip(convs, traced):
        macs += shape[-1] * shape[-2] * c.out_channels * (c.in_channels // c.groups) * c.kernel_size[0] ** 2
    head = count_macs(mobile, 320) - macs
    assert (
        head
        == count_macs(cfg, 320)
        - sum(  # the same LSTM and classifier as the full-conv model
            h * w * co * ci * 9
            for (h, w), co, ci in zip(
                [(32, 320), (16, 160), (8, 80), (8, 80), (4, 80), (4, 80), (2, 80)],
                cfg.channels,
                [1] + cfg.channels[:-1],
            )
        )
    )
    assert count_macs(mobile, 320) < 0.4 * count_macs(cfg, 320)


@pytest.mark.parametrize("block", ["conv", "dwsep"])
def test_a_line_reads_the_same_alone_and_right_padded(block):
    cfg = ModelConfig(
        channels=[8, 16, 16, 32, 32, 32, 32], lstm_hidden=8, lstm_layers=1, num_classes=11, block=block
    )
    torch.manual_seed(0)
    m = CRNN(cfg).eval()
    line = torch.randn(1, 1, 32, 57)
    batch = torch.cat([torch.nn.functional.pad(line, (0, 100), value=3.0), torch.randn(1, 1, 32, 157)])
    with torch.no_grad():
        alone = m(line, torch.tensor([57]))
        padded = m(batch, torch.tensor([57, 157]))[:1, : alone.shape[1]]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_bad_model_config_is_named():
    with pytest.raises(ValueError, match="hstride"):
        CRNN(ModelConfig(hstride=3, num_classes=5))
    with pytest.raises(ValueError, match="num_classes"):
        CRNN(ModelConfig(num_classes=0))
    with pytest.raises(ValueError, match="model.block"):
        CRNN(ModelConfig(num_classes=5, block="inverted"))
