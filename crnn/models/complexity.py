"""Parameters and multiply-accumulates of a CRNN, counted from its config (no tracing, no extra package).

MACs count the convolutions, the LSTM gates (input and recurrent matrix products) and the classifier;
BatchNorm, ReLU and pooling are left out, as is usual (they fold away or cost next to nothing).
"""

from __future__ import annotations

from crnn.models.crnn import ModelConfig, output_length


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(cfg: ModelConfig, width: int = 320) -> int:
    h, w = cfg.height, width
    cin, macs = 1, 0
    for i, (cout, pool) in enumerate(zip(cfg.channels, cfg.pools())):
        if cfg.block == "dwsep" and i > 0:
            macs += h * w * cin * 9 + h * w * cin * cout  # depthwise 3x3, then pointwise 1x1
        else:
            macs += h * w * cout * cin * 9
        if pool is not None:
            h, w = -(-h // pool[0]), -(-w // pool[1])
        cin = cout
    t = output_length(width, cfg.hstride)
    hid = cfg.lstm_hidden
    lstm_in = cin
    for _ in range(cfg.lstm_layers):
        macs += 2 * t * 4 * hid * (lstm_in + hid)  # two directions, four gates
        lstm_in = 2 * hid
    macs += t * 2 * hid * cfg.num_classes
    return macs
