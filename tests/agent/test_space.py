"""The default space: searched inputs and lengths, LoRA priors, and the region the sampler starts in."""

from __future__ import annotations

import pytest

from agent.planning.proposers.base import PlannerView
from agent.planning.proposers.classical import OptunaProposer
from agent.planning.space import UNDERTRAINED_RATIO, default_space, default_values, prior_region
from executors.data import split_rows
from executors.tasks import learning_budget
from memory.records import (
    Budget,
    ColumnProfile,
    DataProfile,
    FloatParam,
    TaskSpec,
    TaskType,
    TrialRecord,
    TrialState,
)


def _setting(words: dict[str, float]) -> tuple[TaskSpec, DataProfile]:
    columns = {name: ColumnProfile(kind="text", n_unique=600, mean_words=n) for name, n in words.items()}
    columns["label"] = ColumnProfile(kind="text", n_unique=2, value_counts={"a": 300, "b": 300})
    profile = DataProfile(path="news.csv", fingerprint="x", n_rows=600, columns=columns)
    task = TaskSpec(
        task_type=TaskType.classification, train_path="news.csv", text_columns=tuple(words), label_column="label",
        metric="macro_f1", direction="maximize", budget=Budget(max_trials=8),
    )  # fmt: skip
    return task, profile


def test_with_several_text_columns_which_go_in_is_searched():
    task, profile = _setting({"headline": 10, "body": 300})
    space = default_space(task, profile)
    assert space.param("text_columns").choices == (("headline", "body"), ("headline",), ("body",))
    assert default_values(task, space, profile)["text_columns"] == ("headline", "body")  # what the user named
    single, profile1 = _setting({"text": 20})
    assert default_space(single, profile1).param("text_columns") is None


def test_long_documents_start_from_their_shortest_lead():
    task, profile = _setting({"headline": 10, "body": 300})
    space = default_space(task, profile)
    assert space.param("max_length").choices == (64, 128, 256, 512)
    assert default_values(task, space, profile)["max_length"] == 64
    short_task, short_profile = _setting({"text": 20})
    short = default_space(short_task, short_profile)
    assert default_values(short_task, short, short_profile)["max_length"] == short.param("max_length").choices[1]
    # Inputs of ~130 tokens: no leads, and the opening stays at 128, not the 256 in the middle.
    medium_task, medium_profile = _setting({"text": 60})
    medium = default_space(medium_task, medium_profile)
    assert medium.param("max_length").choices == (128, 256, 512)
    assert default_values(medium_task, medium, medium_profile)["max_length"] == 128


def test_lengths_past_the_longest_input_are_not_searched():
    """Batches pad to their longest row: a length past the one that holds every input trains the same model."""
    task, profile = _setting({"word": 1.2})
    profile.columns["word"] = profile.columns["word"].model_copy(update={"max_words": 3})
    space = default_space(task, profile)
    assert space.param("max_length") is None and space.fixed["max_length"] == 16
    phrases, profile = _setting({"text": 20})
    profile.columns["text"] = profile.columns["text"].model_copy(update={"max_words": 40})  # ~82 tokens at most
    assert default_space(phrases, profile).param("max_length").choices == (32, 64, 128)
    profile.columns["text"] = profile.columns["text"].model_copy(update={"max_words": 20})  # ~42 tokens
    assert default_space(phrases, profile).param("max_length").choices == (32, 64)
    profile.columns["text"] = profile.columns["text"].model_copy(update={"max_words": 0})  # an old profile
    assert default_space(phrases, profile).param("max_length").choices == (32, 64, 128)


def test_the_opening_puts_adapters_on_every_linear_layer_and_the_lora_scale_and_scheduler_are_not_searched():
    task, profile = _setting({"text": 20})
    space = default_space(task, profile)
    assert space.param("lora_targets").choices == (("all-linear",), ("attention",))
    # The learning rate alone sets the update's size: alpha stays the opening's, the scale alpha / r.
    assert space.param("lora_alpha") is None and space.param("use_rslora") is None
    config = space.to_config(default_values(task, space, profile))
    assert config.lora_targets == ("all-linear",) and config.use_rslora is False and config.lora_alpha == 16
    assert space.repair({**default_values(task, space, profile), "lora_targets": "all-linear"}).values[
        "lora_targets"
    ] == ("all-linear",)  # an LLM's plain string reads as the keyword
    tagging = task.model_copy(update={"task_type": TaskType.token_classification, "metric": "entity_f1"})
    tagging_space = default_space(tagging, profile)
    tagging_opening = tagging_space.to_config(default_values(tagging, tagging_space, profile))
    assert (tagging_opening.lora_alpha, tagging_opening.learning_rate) == (16, 5e-4)  # half classification's update
    # Every drawn rank keeps the opening's alpha, so a rank 4 draw is not a 4x larger update.
    region = prior_region(space, default_values(task, space, profile))
    view = PlannerView(task=task, space=space, profile=profile)
    picks = OptunaProposer("tpe", prior_around=default_values(task, space, profile)).propose(view, 8)
    assert {p.config.lora_alpha for p in picks} == {16} and not any(p.config.use_rslora for p in picks)
    assert region.param("lora_r").choices == (4, 8, 16, 32)
    # Neither are the scheduler (it explained ~1% of the score's variance in the records) nor lowercasing (the
    # default tokenizers are uncased): they stay the opening's.
    assert space.param("scheduler") is None and space.param("normalize") is None
    assert config.scheduler == "linear" and config.normalize == "none"
    generation = task.model_copy(update={"task_type": TaskType.generation, "metric": "exact_match"})
    assert default_space(generation, profile).fixed["scheduler"] == "cosine"


def test_where_the_labels_are_imbalanced_the_opening_balances_them_and_beyond_two_classes_the_search_may_not():
    task, profile = _setting({"tokens": 20})
    space = default_space(task, profile)
    assert space.param("class_weights") is None  # balanced classes: nothing to weigh
    assert space.to_config(default_values(task, space, profile)).class_weights is False
    rare = profile.columns["label"].model_copy(update={"value_counts": {"a": 540, "b": 60}})
    imbalanced = profile.model_copy(update={"columns": {**profile.columns, "label": rare}})
    space = default_space(task, imbalanced)
    # A rare class of two is always balanced: unbalanced, nearly every config predicted the common class.
    assert space.param("class_weights") is None and space.fixed["class_weights"] is True
    assert space.to_config(default_values(task, space, imbalanced)).class_weights is True
    rare_of_three = rare.model_copy(update={"value_counts": {"a": 500, "b": 60, "c": 40}})
    imbalanced = profile.model_copy(update={"columns": {**profile.columns, "label": rare_of_three}})
    space = default_space(task, imbalanced)
    assert space.param("class_weights").choices == (False, True)
    assert space.to_config(default_values(task, space, imbalanced)).class_weights is True
    tagging = task.model_copy(update={"task_type": TaskType.token_classification, "metric": "entity_f1"})
    space = default_space(tagging, profile)
    assert space.param("class_weights").choices == (False, True)  # "O" always outnumbers the entity tags
    assert space.to_config(default_values(tagging, space, profile)).class_weights is True


def test_the_prior_region_surrounds_the_opening():
    task, profile = _setting({"text": 20})
    space = default_space(task, profile)
    opening = default_values(task, space, profile)
    region = prior_region(space, opening)
    lr = region.param("learning_rate")
    assert isinstance(lr, FloatParam)
    start = opening["learning_rate"]
    assert lr.low == pytest.approx(start / 3) and lr.high == pytest.approx(start * 3)
    assert region.param("epochs").low == opening["epochs"]
    assert max(region.param("batch_size").choices) == opening["batch_size"]
    assert region.param("lora_targets").choices == (("all-linear",),)
    assert region.param("max_length") == space.param("max_length")  # features keep every choice


def _trial(number: int, config, state: TrialState = TrialState.complete) -> TrialRecord:  # noqa: ANN001
    return TrialRecord(
        id=number + 1, study_id=1, number=number, config=config, source="tpe", state=state,
        objective=0.5 if state == TrialState.complete else None, metrics={"macro_f1": 0.5}, created_at=float(number),
    )  # fmt: skip


def test_the_samplers_start_up_trials_come_from_the_prior_region_then_the_whole_space():
    task, profile = _setting({"text": 20})
    space = default_space(task, profile)
    opening = default_values(task, space, profile)
    region = prior_region(space, opening)
    sampler = OptunaProposer("tpe", n_startup_trials=5, prior_around=opening)
    trials = [_trial(0, space.to_config(opening))]
    for _ in range(4):
        view = PlannerView(task, space, profile, tuple(trials))
        (proposal,) = sampler.propose(view, 1)
        values = space.values_of(proposal.config)
        assert region.repair(values).repairs == ()  # inside the region: no InvalidProposal, nothing to repair
        trials.append(_trial(len(trials), proposal.config, TrialState.pruned))  # pruned trials count as tried
    view = PlannerView(task, space, profile, tuple(trials))
    assert sampler.sampling_space(view) is space  # five tried: TPE takes the whole space
    assert OptunaProposer("tpe").sampling_space(PlannerView(task, space, profile)) is space  # no prior: no region


def test_after_start_up_the_prior_passes_over_under_trained_picks():
    task, profile = _setting({"text": 20})
    space = default_space(task, profile)
    opening = default_values(task, space, profile)
    rows = split_rows(task, profile)[0]
    floor = learning_budget(space.to_config(opening), rows) / UNDERTRAINED_RATIO
    start = [_trial(0, space.to_config(opening))]
    start += [_trial(i, space.to_config({**opening, "learning_rate": lr})) for i, lr in enumerate((5e-4, 2e-3), 1)]

    def budgets(sampler: OptunaProposer) -> list[float]:
        trials = list(start)
        for _ in range(12):
            (proposal,) = sampler.propose(PlannerView(task, space, profile, tuple(trials), seed=3), 1)
            trials.append(_trial(len(trials), proposal.config))
        return [learning_budget(t.config, rows) for t in trials[len(start) :]]

    # TPE alone, past its start-up trials, spends some of them where too little is learned to tell anything.
    assert min(budgets(OptunaProposer("tpe", n_startup_trials=3))) < floor
    assert min(budgets(OptunaProposer("tpe", n_startup_trials=3, prior_around=opening))) >= floor * (1 - 1e-9)


def test_a_configs_searched_values_are_typed_as_the_space_gives_them():
    task, profile = _setting({"text": 20})
    space = default_space(task, profile)
    opening = default_values(task, space, profile)
    config = space.to_config(opening)
    assert isinstance(config.epochs, float)  # TrialConfig holds epochs as a float, the space as an int
    assert space.values_of(config) == opening and isinstance(space.values_of(config)["epochs"], int)
    outside = config.model_copy(update={"learning_rate": 0.5, "batch_size": 7})
    values = space.values_of(outside)  # what the config holds, never clamped or snapped behind a caller's back
    assert (values["learning_rate"], values["batch_size"]) == (0.5, 7)
