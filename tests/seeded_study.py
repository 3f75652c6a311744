"""A study stored with chosen trials waiting, so `resume` runs exactly those: real trials of a known length."""

from __future__ import annotations

from pathlib import Path

from agent.study import plan_study
from memory.records import TrialConfig, TuneOptions
from memory.store import Store

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def tiny_config(**overrides: object) -> TrialConfig:
    """A MiniLM LoRA config that trains in seconds on a few dozen short rows."""
    fields: dict[str, object] = {"model": MINILM, "max_length": 48, "batch_size": 16, "learning_rate": 2e-3}
    return TrialConfig(**{**fields, **overrides})


def seeded_options(folder: Path, data: Path, name: str, **settings: object) -> TuneOptions:
    """Settings for a small seeded study of the review snippets: its database and runs directory in `folder`."""
    fields: dict[str, object] = {
        "description": "fresh or rotten critic snippets, macro-F1",
        "data": str(data),
        "db": str(folder / f"{name}.db"),
        "runs_dir": str(folder / "runs"),
        "name": name,
        "warm_start": False,
        "pruner": "none",
    }
    return TuneOptions(**{**fields, **settings})


def seed_study(options: TuneOptions, configs: list[TrialConfig]) -> None:
    """Store the study `options` describe (named `options.name`) with `configs` waiting, in order."""
    assert options.name, "a seeded study needs a name to resume it by"
    plan = plan_study(options)
    run_dir = str(Path(options.runs_dir) / options.name)
    with Store(options.db) as store:
        study = store.create_study(options.name, plan.task, plan.space, options, run_dir, plan.profile)
        for config in configs:
            store.add_trial(study.id, config, "seeded")
