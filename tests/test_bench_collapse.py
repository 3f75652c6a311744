"""bench_collapse's arithmetic: what counts as collapsed, and that it draws the configs a study's sampler draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_collapse", ROOT / "benchmarks" / "bench_collapse.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_collapse"] = module
    spec.loader.exec_module(module)
    return module


def test_one_class_for_every_row_or_no_entity_is_a_collapse(bench) -> None:
    assert bench.one_class({"gold_classes": 2, "predicted_classes": 1})
    assert not bench.one_class({"gold_classes": 2, "predicted_classes": 2})
    assert not bench.one_class({"gold_classes": 1, "predicted_classes": 1})  # one class in the rows: nothing to tell
    assert bench.one_class({"gold_entity_tags": 12, "predicted_entity_tags": 0})
    assert not bench.one_class({"gold_entity_tags": 12, "predicted_entity_tags": 3})


def test_it_draws_the_openings_region_as_a_study_does_and_the_old_space_on_request(bench, tmp_path: Path) -> None:
    task = bench.write_task("rt", 300, tmp_path)
    opening, configs = bench.draw(task, 6, seed=0)
    assert len(configs) == 7 and configs[0].learning_rate == opening["learning_rate"]
    low, high = opening["learning_rate"] / 3, opening["learning_rate"] * 3
    assert all(low * 0.999 <= c.learning_rate <= high * 1.001 for c in configs[1:])  # the prior region
    assert {c.lora_alpha for c in configs} == {16} and not any(c.use_rslora for c in configs)
    _, old = bench.draw(task, 6, seed=0, search_scale=True)
    assert len({(c.lora_alpha, c.use_rslora) for c in old}) > 1  # alpha and rsLoRA searched again


def test_the_records_table_counts_by_alpha_and_rslora(bench, capsys) -> None:
    bench.from_records()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["lora_alpha", "rsLoRA", "trials", "collapsed"]
    rows = {(int(line.split()[0]), line.split()[1]): int(line.split()[2]) for line in out[1:]}
    assert rows[(16, "False")] == 221 and sum(rows.values()) == 660  # the committed planner records
