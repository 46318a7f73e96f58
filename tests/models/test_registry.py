import pytest

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.models import ModelInfo, register_model


def test_list_models_is_sorted_and_filterable():
    names = cnnlab.list_models()
    assert names == sorted(names) and "lenet5" in names
    assert cnnlab.list_models("lenet*") == [n for n in names if n.startswith("lenet")]


def test_unknown_name_lists_close_matches():
    with pytest.raises(ConfigError, match=r"unknown model 'lenet-5'.*Did you mean: lenet5"):
        cnnlab.create_model("lenet-5")
    with pytest.raises(ConfigError, match="cnnlab models"):
        cnnlab.model_info("zzzzzz")


def test_model_info_has_the_facts():
    info = cnnlab.model_info("lenet5")
    assert (info.year, info.input_size, info.params) == (1998, (1, 32, 32), 60_850)
    assert "LeCun" in info.paper and info.deviations


def test_none_arguments_keep_the_model_defaults():
    model = cnnlab.create_model("lenet5", num_classes=None, in_chans=None, input_size=None)
    assert model.output.out_features == 10 and model.c1.in_channels == 1
    model = cnnlab.create_model("lenet5", num_classes=7, in_chans=3, input_size=28)
    assert model.output.out_features == 7 and model.c1.in_channels == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_num_classes(bad):
    with pytest.raises(ConfigError, match="num_classes must be a positive integer"):
        cnnlab.create_model("lenet5", num_classes=bad)


def test_registering_twice_or_misnamed_is_refused():
    info = cnnlab.model_info("lenet5")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(info)(lambda: None)
    with pytest.raises(ValueError, match="must be named like"):
        register_model(ModelInfo(**{**info.to_dict(), "name": "other_name"}))(lambda: None)
