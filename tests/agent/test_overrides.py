"""A study file's `space:` section: ranges, choices and fixed values over the default space, each checked."""

from __future__ import annotations

import pytest

from agent.planning.overrides import apply_overrides
from agent.study import options_from
from memory.errors import UserError
from memory.records import CategoricalParam, FloatParam, IntParam, TuneOptions
from tests.agent.proposer_contract import SPACE


def _apply(space: dict):  # noqa: ANN202
    return apply_overrides(SPACE, TuneOptions(space=space).space)


def test_a_range_keeps_the_defaults_scale_and_other_end():
    space = _apply({"learning_rate": {"high": 1e-3}, "epochs": {"low": 2, "high": 5}})
    assert space.param("learning_rate") == FloatParam(name="learning_rate", low=1e-4, high=1e-3, log=True)
    assert space.param("epochs") == IntParam(name="epochs", low=2, high=5)  # epochs stays whole


def test_choices_and_fixed_values():
    space = _apply({"lora_r": {"choices": [16, 32]}, "batch_size": 8, "template": {"value": None}})
    assert space.param("lora_r") == CategoricalParam(name="lora_r", choices=(16, 32))
    assert space.param("batch_size") is None and space.fixed["batch_size"] == 8
    assert "template" in space.fixed and space.fixed["template"] is None


def test_a_parameter_the_default_does_not_tune_can_be_tuned():
    space = _apply({"grad_accum": {"low": 1, "high": 4}, "max_grad_norm": {"low": 0.5, "high": 2}})
    assert space.param("grad_accum") == IntParam(name="grad_accum", low=1, high=4)
    assert space.param("max_grad_norm") == FloatParam(name="max_grad_norm", low=0.5, high=2.0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lora_rank": 8}, "space.lora_rank: unknown parameter 'lora_rank'; did you mean 'lora_r'?"),
        ({"model": "x"}, "list the candidate base models under `models:`"),
        ({"lora_r": {"choices": [8, "big"]}}, "space.lora_r.choices = 'big' is not allowed"),
        ({"lora_r": [8, 16]}, "to tune among several values, write {choices: [...]}"),
        ({"learning_rate": {"low": 0.01, "high": 0.001}}, "low 0.01 is above high 0.001"),
        ({"learning_rate": {"low": 2.0}}, "space.learning_rate.low = 2.0 is not allowed"),
        ({"warmup_ratio": {"low": 0, "high": 0.1, "log": True}}, "a log-scaled range needs low > 0"),
        ({"epochs": {"low": 1.5, "high": 3}}, "tuned in whole numbers"),
        ({"grad_accum": {"low": 2}}, "give both low and high"),
        ({"scheduler": {"low": 1, "high": 2}}, "is not allowed"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(override, message):
    with pytest.raises(UserError, match=None) as caught:
        _apply(override)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_override_record_says_what_kind_it_is():
    with pytest.raises(UserError, match="give one of low/high"):
        options_from({"space": {"lora_r": {"value": 8, "choices": [8]}}})
    options = TuneOptions(space={"lora_r": 16, "learning_rate": {"low": 1e-4}})
    assert TuneOptions.model_validate(options.model_dump(mode="json")) == options  # as the store reads it back
