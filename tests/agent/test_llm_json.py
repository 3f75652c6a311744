"""Lenient parsing of LLM answers: what small models really write."""

from __future__ import annotations

import math

import pytest

from agent.llm.parsing import LlmJsonError, find_objects, parse_all, parse_lenient, rationale_of

NAMES = ("learning_rate", "batch_size")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"learning_rate": 0.001}', {"learning_rate": 0.001}),
        ('Sure!\n```json\n{"learning_rate": 1e-4, "batch_size": 16,}\n```\nGood luck.', {"learning_rate": 1e-4,
                                                                                         "batch_size": 16}),
        ('Here you go: {"learning_rate": 0.001} -- hope that helps', {"learning_rate": 0.001}),
        ("{'learning_rate': 0.001, 'fast': True, 'x': None}", {"learning_rate": 0.001, "fast": True, "x": None}),
        ('{"learning_rate": 2e-4, // lower is safer\n "batch_size": 8 /* small */}', {"learning_rate": 2e-4,
                                                                                   "batch_size": 8}),
        ("{learning_rate: 3e-4, batch_size: 32}", {"learning_rate": 3e-4, "batch_size": 32}),
        ('[{"a": 1}, {"a": 2},]', [{"a": 1}, {"a": 2}]),
        ('{"why": "it\'s the model\'s best"}', {"why": "it's the model's best"}),
        ('{"text": "a, b: c, } // not a comment"}', {"text": "a, b: c, } // not a comment"}),
        ('{"a": 1, "b": [1, 2', {"a": 1}),  # cut off: the last member may be cut too, so it goes
        ('{"lr": 3e-4, "lora_r": 1', {"lr": 3e-4}),
        ('{"proposals": [{"lr": 1, "cols": ["title', {"proposals": [{"lr": 1}]}),
        ('```json\n{"learning_rate": 0.0002, "batch_size": 16, "lora_r":', {"learning_rate": 0.0002,
                                                                           "batch_size": 16}),
        ('{"columns": ("title", "text")}', {"columns": ["title", "text"]}),
    ],
)  # fmt: skip
def test_parse_lenient_reads_what_small_models_write(text, expected):
    assert parse_lenient(text) == expected


def test_nan_and_infinity_parse_as_floats_for_the_space_to_reject():
    value = parse_lenient('{"a": NaN, "b": Infinity, "c": -Infinity}')
    assert math.isnan(value["a"]) and value["b"] == math.inf and value["c"] == -math.inf


@pytest.mark.parametrize("text", ["", "   ", "no json here", "42", '"just a string"', "{{{{", "[" * 5000])
def test_parse_lenient_raises_one_error_type_for_garbage(text):
    with pytest.raises(LlmJsonError):
        parse_lenient(text)


def test_parse_all_finds_every_object_in_prose():
    text = 'Bad: {"learning_rate": "oops"}. Better: {"learning_rate": 0.001}. Also [1, 2].'
    assert parse_all(text) == [{"learning_rate": "oops"}, {"learning_rate": 0.001}, [1, 2]]
    assert parse_all('```\n{"a": 1}\n```\nand\n```\n{"a": 2}\n```') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"learning_rate": 1}, [{"learning_rate": 1}]),
        ([{"learning_rate": 1}, {"batch_size": 2}, "junk", 3], [{"learning_rate": 1}, {"batch_size": 2}]),
        ({"proposals": [{"learning_rate": 1}]}, [{"learning_rate": 1}]),
        ({"config": {"learning_rate": 1}, "rationale": "r"}, [{"learning_rate": 1, "rationale": "r"}]),
        ({"proposals": [{"config": {"learning_rate": 1}, "why": "w"}]}, [{"learning_rate": 1, "rationale": "w"}]),
        ({"answer": {"result": {"params": {"Learning-Rate": 1}}}}, [{"Learning-Rate": 1}]),
        ({"unrelated": 1, "other": 2, "third": {"learning_rate": 1}}, []),
        ([[[[[[[[[[{"learning_rate": 1}]]]]]]]]]], []),
        ("learning_rate", []),
        (None, []),
    ],
)
def test_find_objects_unwraps_lists_and_wrapper_keys(value, expected):
    assert find_objects(value, NAMES) == expected


def test_rationale_of_reads_the_common_keys():
    assert rationale_of({"Reasoning": "because"}) == "because"
    assert rationale_of({"learning_rate": 1}) == ""
