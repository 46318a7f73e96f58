"""Typed configuration: one door for every value, flags generated from the dataclasses."""

import dataclasses
import typing

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.errors import ConfigError
from cnnlab.lab.common import Experiment, Outcome
from cnnlab.train.config import (
    CHOICES,
    PRECISIONS,
    SCHEDULES,
    RunConfig,
    apply_overrides,
    field_comments,
    flatten,
)
from cnnlab.train.values import coerce


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.lr=abc"], "train.lr='abc' is not a valid float"),
    (["--set", "train.tta_flip=ture"], "train.tta_flip='ture' is not a valid bool"),
    (["--set", "train.epochs=2.5"], "train.epochs='2.5' is not a valid int"),
    (["--set", "augment.flip=1.5"], "augment.flip must be in [0, 1], got 1.5"),
    (["--set", "train.lr=nan"], "train.lr='nan' is not a finite number"),
    (["--set", "train=1"], "train is a config section"),
    (["--set", "train.momentum=-1"], "train.momentum must be in [0, 1), got -1.0"),
    (["--set", "augment.erase_area=0.5"], "augment.erase_area must be two fractions"),
    (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
])
def test_bad_values_exit_2_with_one_line(argv, message, capsys, tmp_path):
    try:
        code = main(["train", "lenet5", *argv, "--out", str(tmp_path / "never")])
    except SystemExit as usage_error:  # argparse's own errors exit from inside main
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err
    assert not (tmp_path / "never").exists()


def test_lab_settings_are_parsed_by_the_same_code(capsys, tmp_path):
    code = main(["lab", "depth", "--quick", "--set", "epochs=abc", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "epochs='abc' is not a valid int" in err
    toy = Experiment("toy", "a claim", {"default": dict(plot=True, sizes=[1, 2], name="a")},
                     lambda ctx: Outcome({}, ""))
    assert toy.resolve("default", {"plot": "false", "sizes": "3,4", "name": "b"}) == dict(
        plot=False, sizes=[3, 4], name="b")
    with pytest.raises(ConfigError, match="plot='ture' is not a valid bool"):
        toy.resolve("default", {"plot": "ture"})  # once silently False


def test_typed_values_and_strings_meet_the_same_checks():
    config = apply_overrides(RunConfig(), {"train.lr": 1, "train.step_epochs": "30,60",
                                           "train.channels_last": "none", "model.options": '{"a": 1}'})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.step_epochs == [30.0, 60.0] and config.train.channels_last is None
    assert config.model.options == {"a": 1}
    for key, value in (("train.epochs", 2.5), ("train.epochs", True), ("train.nesterov", 1),
                       ("data.name", 5), ("model.options", [1])):
        with pytest.raises(ConfigError, match="is not a valid"):
            apply_overrides(RunConfig(), {key: value})
    assert coerce("k", "[1, 2]", list[int]) == [1, 2] and coerce("k", "null", int | None) is None
    # YAML/JSON files go through the same door
    with pytest.raises(ConfigError, match="train.epochs=None is not a valid int"):
        RunConfig.from_dict({"train": {"epochs": None}})
    with pytest.raises(ConfigError, match="must map keys to values"):
        RunConfig.from_dict({"train": 1})


def test_every_key_has_a_comment_and_validates_at_its_default():
    config = RunConfig().validate()
    for key in flatten(config):
        section, name = key.split(".")
        assert field_comments(section).get(name), f"{key} has no one-line comment"
    assert RunConfig.from_dict(config.to_dict()) == config


def test_flags_take_type_choices_help_and_default_from_the_fields(capsys):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    train = {a.option_strings[0]: a for a in sub["train"]._actions if a.option_strings}
    assert tuple(train["--schedule"].choices) == SCHEDULES
    assert tuple(train["--precision"].choices) == PRECISIONS == CHOICES["train.precision"]
    comments = field_comments("train")
    assert train["--lr"].help == f"{comments['lr']} (default: {RunConfig().train.lr})"
    assert "(default: 5)" in {a.option_strings[0]: a for a in sub["transfer"]._actions
                              if a.option_strings}["--epochs"].help
    from cnnlab.evaluate.tta import TTA_MODES

    transfer = {a.option_strings[0]: a for a in sub["transfer"]._actions if a.option_strings}
    assert tuple(transfer["--cache-views"].choices) == TTA_MODES  # center included
    evaluate = {a.option_strings[0]: a for a in sub["evaluate"]._actions if a.option_strings}
    assert tuple(evaluate["--tta"].choices) == TTA_MODES
    # a flag's value is typed when it reaches the config: no string round trip
    assert main(["train", "lenet5", "--lr", "0.2", "--deterministic", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "lr: 0.2\n" in shown and "deterministic: true" in shown


def test_field_types_are_what_the_dataclasses_declare():
    hints = typing.get_type_hints(type(RunConfig().train))
    for f in dataclasses.fields(RunConfig().train):
        value = getattr(RunConfig().train, f.name)
        assert coerce(f.name, value, hints[f.name]) == value  # defaults pass their own type
