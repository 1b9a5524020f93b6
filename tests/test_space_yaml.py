"""Space files read as their authors meant (#42 kind 3, #41 item 9): one rule for numbers, a
key given twice refused, plain lists and misplaced keys explained, every problem at once."""

import pytest

from autotransfer.errors import SpaceError
from autotransfer.space.schema import CategoricalDistribution, FloatDistribution, load_space

HEAD = "backbones: [packaged/mobilenetv2_100]\nepochs: 1\n"


def _load(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_space(path)


def _error(tmp_path, text) -> str:
    with pytest.raises(SpaceError) as info:
        _load(tmp_path, text)
    return str(info.value)


def test_exponent_without_a_dot_is_a_number_as_fixed_value_choice_and_bound(tmp_path):
    fixed = _load(tmp_path, HEAD + "params:\n  lr: 3e-3\n  weight_decay: 1E-4\n")
    assert fixed.params["lr"] == pytest.approx(0.003)
    assert fixed.params["weight_decay"] == pytest.approx(1e-4)
    choices = _load(tmp_path, HEAD + "params:\n  lr: {type: categorical, choices: [1e-3, 3e-3]}\n")
    assert isinstance(choices.params["lr"], CategoricalDistribution)
    assert choices.params["lr"].choices == [pytest.approx(1e-3), pytest.approx(3e-3)]
    bound = _load(tmp_path, HEAD + "params:\n  lr: {type: float, low: 1e-4, high: 1e-2}\n")
    assert isinstance(bound.params["lr"], FloatDistribution) and bound.params["lr"].low == 1e-4


def test_a_quoted_number_is_refused_alike_as_fixed_value_choice_and_bound(tmp_path):
    text = HEAD + ('params:\n  lr: "3e-3"\n'
                   '  dropout: {type: categorical, choices: [0.1, "0.2"]}\n'
                   '  weight_decay: {type: float, low: "1e-4", high: 0.1}\n')
    lines = _error(tmp_path, text).splitlines()
    assert len(lines) == 3
    assert all("write it without quotes" in line for line in lines), lines
    assert lines[0].endswith("space.yaml:4: params.lr: must be a number, got the string "
                             "'3e-3'; write it without quotes")
    assert ":5: params.dropout.choices[1]" in lines[1] and ":6: params.weight_decay" in lines[2]


def test_integers_written_as_floats_are_integers(tmp_path):
    space = _load(tmp_path, "backbones: [a/b]\nepochs: 2.0\nparams:\n  batch_size: 16.0\n"
                            "  image_size: {type: categorical, choices: [32.0, 64]}\n")
    assert space.epochs == 2 and type(space.params["batch_size"]) is int
    assert [type(c) for c in space.params["image_size"].choices] == [int, int]


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    text = HEAD + "params:\n  freeze_fraction: 1.0\n  lr: 3.0e-3\nparams:\n  batch_size: 16\n"
    message = _error(tmp_path, text)
    assert message.endswith("space.yaml:6: params: given twice (lines 3 and 6); only the last "
                            "would be read: merge them into one")
    nested = _error(tmp_path, HEAD + "params:\n  lr: 0.1\n  lr: 0.2\n")
    assert "space.yaml:5: params.lr: given twice (lines 4 and 5)" in nested


def test_plain_list_bare_string_and_unindented_keys_are_explained(tmp_path):
    plain = _error(tmp_path, HEAD + "params:\n  batch_size: [16, 32]\n")
    assert plain.endswith(":4: params.batch_size: a plain list is not a search; write a "
                          "categorical as {type: categorical, choices: [16, 32]}")
    bare = _error(tmp_path, "backbones: packaged/mobilenetv2_100\nepochs: 1\n")
    assert bare.endswith(":1: backbones: expected a list, got the string "
                         "'packaged/mobilenetv2_100'; write backbones: [packaged/mobilenetv2_100]")
    flat = _error(tmp_path, HEAD + "params:\nlr: 0.01\n")
    assert flat.endswith(":4: 'lr' is a hyperparameter: indent it under params:")


def test_every_problem_of_a_file_in_one_error_one_line_each_in_file_order(tmp_path):
    text = ("backbones: packaged/mobilenetv2_100\nepochs: 2\nparams:\nlr: 3e-3\nparams:\n"
            "  batch_size: [16, 32]\n  freeze_fraction: 2\ncolour: red\n")
    lines = _error(tmp_path, text).splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == \
        ["1", "4", "5", "6", "7", "8"], lines
    assert "freeze_fraction: must be <= 1" in lines[4] and "unknown key 'colour'" in lines[5]
