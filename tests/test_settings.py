"""The run config's model section is the model's own description (crnn.models.config.ModelConfig)."""

from dataclasses import replace

import pytest

from crnn.charset import load_charset
from crnn.config import ConfigError
from crnn.models.config import ModelConfig
from crnn.models.crnn import CRNN
from crnn.train_utils import model_config_for
from tests.conftest import compose_cfg


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_each_model_preset_is_a_model_config_completed_by_the_alphabet(preset):
    cfg = compose_cfg([f"model={preset}", "charset=digits"])
    assert type(cfg.model) is ModelConfig  # one description, no second dataclass to keep in step
    assert cfg.model.num_classes == 0 and cfg.model.height == cfg.input.height
    built = model_config_for(cfg, load_charset("digits"))
    assert built == replace(cfg.model, num_classes=load_charset("digits").num_classes)
    assert CRNN(built).cfg.name == preset


def test_the_model_follows_the_input_height_and_refuses_a_second_one():
    cfg = compose_cfg(["input.height=64", "model.pool_after=[0,1,2,3,5,6]"])
    assert cfg.model.height == 64
    with pytest.raises(ConfigError, match=r"model\.height=64 differs from input\.height=32"):
        compose_cfg(["+model.height=64"])
    with pytest.raises(
        ConfigError, match=r"model\.num_classes=5: the number of classes comes from the alphabet"
    ):
        compose_cfg(["+model.num_classes=5"])
