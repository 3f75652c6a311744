"""The default search space for a task: which models, features and hyperparameters to tune.

Ranges are LoRA-sized and kept small enough for CPU studies; a config file can
replace any of it. The priors follow what LoRA studies measured ("LoRA Without
Regret", Thinking Machines 2025): the best LoRA learning rate is about ten
times a full fine-tune's and nearly independent of the rank at a fixed alpha,
and adapters belong on every linear layer, not the attention alone. The
opening trial sits there, and the sampler's first, random trials are drawn
from a region around it (`prior_region`) rather than from corners known to
fail (a learning rate of 1e-4 for a fresh head, one epoch of batch 32 on a
few hundred rows: both predict the majority class).
"""

from __future__ import annotations

import math
from typing import Any

from agent.planning.cost import CostModel
from executors.data import split_rows
from executors.models import offline_models
from memory.records import (
    CategoricalParam,
    DataProfile,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    TaskSpec,
    TaskType,
    TrialConfig,
)

DEFAULT_MODELS: dict[TaskType, tuple[str, ...]] = {
    TaskType.classification: ("sentence-transformers/all-MiniLM-L6-v2",),
    TaskType.token_classification: ("sentence-transformers/all-MiniLM-L6-v2",),
    TaskType.generation: ("HuggingFaceTB/SmolLM2-135M-Instruct",),
}

# A stronger, slower encoder (MPNet, 109M parameters against MiniLM's 22.7M: about 5x the price per trial)
# joins the space when the time budget can pay for AFFORDABLE_TRIALS of its trials; a trial count alone says
# nothing about time, so then the cheap model stays alone (name both with `models:` or --models to insist).
STRONGER_MODEL = "sentence-transformers/all-mpnet-base-v2"
AFFORDABLE_TRIALS = 4

# The fewest optimizer steps the default start takes, where the data and the space allow it.
MIN_START_STEPS = 200

# A known-good starting point for each task type: the first trial of a study
# with no history, so a study never starts from a random corner of the space.
DEFAULT_VALUES: dict[TaskType, dict[str, Any]] = {
    TaskType.classification: {
        "learning_rate": 1e-3,
        "epochs": 2,
        "batch_size": 16,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "warmup_ratio": 0.06,
        "weight_decay": 0.01,
        "scheduler": "linear",
        "lora_targets": ("all-linear",),
        # Where the space offers class weighting (imbalanced labels), the opening weights its loss: in the tables
        # of the four imbalanced classification tasks (benchmarks/tables: inquirer, moral, syllables, thesaurus)
        # the weighted config beat its unweighted twin on test in 115 of 135 pairs, at the opening in all four.
        "class_weights": True,
    },
    # Tagging opens at half classification's rate, alpha 16 like every task type: at alpha 32 and 1e-3 (twice
    # classification's update) the opening and every start-up draw from 9e-4 up tagged every WNUT token O, while
    # draws at 3.5e-4 and 4.3e-4 learned (bench_collapse, benchmarks/records/collapse.json). Most tokens are O,
    # and a large update finds that prior first.
    TaskType.token_classification: {
        "learning_rate": 5e-4,
        "epochs": 3,
        "batch_size": 16,
        "lora_r": 16,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "warmup_ratio": 0.06,
        "weight_decay": 0.01,
        "scheduler": "linear",
        "lora_targets": ("all-linear",),
        # Unweighted, 23 of the 30 WNUT grid configs tagged (almost) every token O; weighted, 5. At the opening
        # the two tie (entity F1 0.252 weighted, 0.256 not, on 982 test sentences).
        "class_weights": True,
    },
    TaskType.generation: {
        "learning_rate": 5e-4,
        "epochs": 1,
        "batch_size": 8,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "warmup_ratio": 0.03,
        "weight_decay": 0.0,
        "scheduler": "cosine",
        "lora_targets": ("all-linear",),
    },
}

# Why lora_alpha and rsLoRA are not searched: alpha stays the opening's, the scale alpha / r. With Adam, a LoRA
# update's early size grows with alpha x learning rate whatever the rank ("LoRA Without Regret": at a fixed
# alpha the best rate is nearly rank-independent), and rsLoRA's alpha / sqrt(r) multiplies it by sqrt(r) more.
# Searching both beside the learning rate spread the update's size over two orders of magnitude, and its top
# collapsed to one class. In benchmarks/records/planner-*.json (660 trials on two tasks), 3 of the 221 trials
# at alpha 16 without rsLoRA collapsed, 43 of the other 439 did, 24 of the 87 at alpha 32 with rsLoRA among
# them (`python benchmarks/bench_collapse.py --from-records`). The learning rate alone now sets the update's
# size; a config file may still search alpha.

# Fixed at the opening's values, not searched. Besides alpha (above): the scheduler explained at most 1% of the
# score's variance (fANOVA) on three of the four task-device pairs of benchmarks/records/planner-*.json (57-124
# complete trials each; rt and debates, the tasks that set these priors), and lowercasing the inputs
# (`normalize`) changes nothing for the uncased MiniLM and MPNet tokenizers. Every dimension a search drops leaves
# its few trials to the levers that move the score. A study file may still search either.
UNSEARCHED = ("lora_alpha", "scheduler")

# No opening reads more than this many tokens: the cheap start, longer lengths are the search's to try.
OPENING_MAX_LENGTH = 128
# Inputs longer than this (at the 95th percentile) are long documents: they also get their leads, and open
# at the shortest. A lead often carries the label, and a mean-pooled encoder dilutes it in what follows: on
# critic snippets followed by 130 words of unrelated synopsis (bench_long_documents), one MiniLM trial
# scored macro-F1 0.66 at 64 tokens and 0.51 at 128, at half the price.
LONG_INPUT = 2 * OPENING_MAX_LENGTH
LEAD_LENGTHS = (64, 128)


def default_space(
    task: TaskSpec, profile: DataProfile, models: tuple[str, ...] | None = None, cost: CostModel | None = None
) -> SearchSpace:
    """Build the search space for `task` from its data profile (`cost` prices the stronger model's trials)."""
    models = models or default_models(task, profile, cost)
    params: list[Param] = [
        CategoricalParam(name="model", choices=tuple(models)),
        FloatParam(name="learning_rate", low=1e-4, high=5e-3, log=True),
        IntParam(name="epochs", low=1, high=3),
        CategoricalParam(name="batch_size", choices=(8, 16, 32)),
        CategoricalParam(name="lora_r", choices=(4, 8, 16, 32)),
        FloatParam(name="lora_dropout", low=0.0, high=0.2),
        FloatParam(name="warmup_ratio", low=0.0, high=0.2),
        FloatParam(name="weight_decay", low=0.0, high=0.1),
        CategoricalParam(name="lora_targets", choices=(("all-linear",), ("attention",))),
    ]
    # alpha stays the opening's and the scale alpha / r, no rsLoRA: see "Why lora_alpha and rsLoRA" above. The
    # scheduler stays the opening's too: see UNSEARCHED.
    fixed: dict[str, Any] = {"seed": task.seed, **{k: DEFAULT_VALUES[task.task_type][k] for k in UNSEARCHED}}
    max_length = suggest_max_length(task, profile)
    if task.task_type == TaskType.classification:
        if len(task.text_columns) > 1:
            params.append(CategoricalParam(name="text_columns", choices=column_choices(task.text_columns)))
        lengths = _length_choices(max_length, longest_tokens(task, profile))
        if len(lengths) > 1:
            params.append(CategoricalParam(name="max_length", choices=lengths))
        else:
            fixed["max_length"] = lengths[0]
        if _imbalanced(task, profile) and len(_label_counts(task, profile)) == 2:
            # A rare class of two: unbalanced, 15 of the 19 start-up configs drawn that way predicted the common
            # class for every row, balanced 1 of 21 (benchmarks/records/collapse-rare.json). Not searched.
            fixed["class_weights"] = True
        elif _imbalanced(task, profile):
            params.append(CategoricalParam(name="class_weights", choices=(False, True)))
    else:
        fixed["max_length"] = max_length
    if task.task_type == TaskType.token_classification:
        # "O" outnumbers every entity tag many times over: unweighted, a high or a low learning rate can settle on
        # all-O (F1 0). Weighted, those configs learn entities (benchmarks/tables/wnut.jsonl).
        params.append(CategoricalParam(name="class_weights", choices=(False, True)))
    if len(models) == 1:
        fixed["model"] = models[0]
        params = [p for p in params if p.name != "model"]
    return SearchSpace(params=tuple(params), fixed=fixed)


def default_models(task: TaskSpec, profile: DataProfile | None, cost: CostModel | None = None) -> tuple[str, ...]:
    """The task type's cheap default model, plus the stronger encoder when the time budget affords it.

    `cost` prices its trials (this machine's measured speed); without one, the prior's idle 2-core CPU.
    """
    models = DEFAULT_MODELS[task.task_type]
    seconds = task.budget.max_seconds
    # Not installed: the hub may have it, but a study that would download 440 MB must be asked for by name.
    if task.task_type == TaskType.generation or not seconds or STRONGER_MODEL not in offline_models():
        return models
    stronger = TrialConfig(model=STRONGER_MODEL, **DEFAULT_VALUES[task.task_type])
    if AFFORDABLE_TRIALS * (cost or CostModel(task, profile)).estimate(stronger).seconds <= seconds:
        return (*models, STRONGER_MODEL)
    return models


def default_values(task: TaskSpec, space: SearchSpace, profile: DataProfile | None = None) -> dict[str, Any]:
    """The known-good start for this task, fitted to the size of its data and into `space`."""
    wanted = dict(DEFAULT_VALUES[task.task_type])
    if task.task_type != TaskType.generation:  # a new, random head; an LM head is trained already
        _enough_updates(wanted, space, split_rows(task, profile)[0] if profile is not None else None)
    for p in space.params:
        if p.name not in wanted:
            wanted[p.name] = p.choices[0] if isinstance(p, CategoricalParam) else (p.low + p.high) / 2
        if p.name == "max_length" and isinstance(p, CategoricalParam):
            wanted[p.name] = _opening_length(p.choices, profile is not None and _long_input(task, profile))
    return space.repair({k: v for k, v in wanted.items() if space.param(k) is not None}).values


def column_choices(columns: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Which inputs a trial may read: all of them first, then each alone (a headline may say it all, cheaply)."""
    return (tuple(columns), *((c,) for c in columns))


def prior_region(space: SearchSpace, opening: dict[str, Any]) -> SearchSpace:
    """The part of `space` around the opening trial that the sampler's first, random trials are drawn from.

    Learning rates within 3x of the opening's, at least its epochs and at most its batch size (it was sized
    to give the fresh head enough updates), its adapter layout; dropout, warmup and decay in their lower
    halves. Models, inputs, lengths and the rest keep all their choices.
    """
    params: list[Param] = []
    for p in space.params:
        v = opening.get(p.name)
        if v is None:
            params.append(p)
        elif isinstance(p, FloatParam) and p.log:
            params.append(p.model_copy(update={"low": max(p.low, v / 3), "high": min(p.high, v * 3)}))
        elif isinstance(p, FloatParam):
            params.append(p.model_copy(update={"high": max(v, p.low + (p.high - p.low) / 2)}))
        elif p.name == "epochs" and isinstance(p, IntParam):
            params.append(p.model_copy(update={"low": v}))
        elif p.name == "batch_size" and isinstance(p, CategoricalParam):
            params.append(p.model_copy(update={"choices": tuple(c for c in p.choices if c <= v) or p.choices}))
        elif p.name == "lora_targets":
            params.append(p.model_copy(update={"choices": (v,)}))
        else:
            params.append(p)
    return space.model_copy(update={"params": tuple(params)})


# A config whose learning budget (learning rate x optimizer steps) is this many times below the opening's
# trains too little to tell anything about its region. In the recorded bench_planner runs (two tasks, CPU and
# H200, 400 training rows), none of the 63 finished trials with 5-10x less beat the opening (mean -0.27
# macro-F1, 10 more collapsed to one class); at 3-5x less, 6 of 19 did, by up to 0.017.
UNDERTRAINED_RATIO = 5


def _enough_updates(wanted: dict[str, Any], space: SearchSpace, train_rows: int | None) -> None:
    """Give the start at least MIN_START_STEPS optimizer steps: more epochs first, then smaller batches.

    Two epochs of batch 16 suit a few thousand rows; on a few hundred that is
    forty updates, too few for a new classifier head to learn anything (it
    predicts the majority class), so small data gets more, smaller steps.
    """
    epochs, batch = space.param("epochs"), space.param("batch_size")
    if not train_rows or not isinstance(epochs, IntParam) or not isinstance(batch, CategoricalParam):
        return
    accum = wanted.get("grad_accum", 1)
    for size in sorted((b for b in batch.choices if b <= wanted["batch_size"]), reverse=True):
        need = math.ceil(MIN_START_STEPS / math.ceil(train_rows / (size * accum)))
        if need <= epochs.high:
            wanted.update(batch_size=size, epochs=max(wanted["epochs"], need))
            return
    wanted.update(batch_size=min(batch.choices), epochs=epochs.high)


def suggest_max_length(task: TaskSpec, profile: DataProfile) -> int:
    """A max_length that covers ~95% of inputs: words × 1.4 sub-word tokens, in powers of two."""
    words = 0.0
    for name in task.text_columns:
        info = profile.column(name)
        words += (info.mean_words or info.mean_items or 16) if info is not None else 16
    if task.task_type == TaskType.generation:
        target = profile.column(task.label_column)
        words += (target.mean_words if target is not None else 0) or 16
        words += 30  # chat template and instruction scaffolding
    tokens = words * 1.4 * 2  # mean → ~95th percentile for typical length distributions
    length = 32
    while length < tokens and length < 512:
        length *= 2
    return length


def longest_tokens(task: TaskSpec, profile: DataProfile) -> int | None:
    """A generous count of the longest input's tokens (2 sub-words a word, the special tokens); None: unknown."""
    columns = [profile.column(name) for name in task.text_columns]
    if any(c is None or not c.max_words for c in columns):
        return None
    return sum(2 * c.max_words for c in columns if c is not None) + 1 + len(columns)


def _length_choices(center: int, longest: int | None = None) -> tuple[int, ...]:
    """Half, the same and twice the length that covers most inputs; long inputs also get their leads.

    Batches are padded to their longest row, so every length past the first that holds the longest input trains
    the same model: those are dropped (words and short phrases keep one length, and the search its trials).
    """
    choices = sorted(
        {max(16, center // 2), center, min(512, center * 2)} | (set(LEAD_LENGTHS) if center > LONG_INPUT else set())
    )
    if longest is not None:
        enough = next((c for c in choices if c >= longest), None)
        choices = [c for c in choices if enough is None or c <= enough]
    return tuple(choices)


def _long_input(task: TaskSpec, profile: DataProfile) -> bool:
    return suggest_max_length(task, profile) > LONG_INPUT


def _opening_length(choices: tuple[Any, ...], long_input: bool) -> Any:
    """The shortest lead of a long document; else the length that covers most inputs, at most OPENING_MAX_LENGTH."""
    if long_input:
        return min(choices)
    middle = choices[len(choices) // 2]
    return max((c for c in choices if c <= min(middle, OPENING_MAX_LENGTH)), default=middle)


def _label_counts(task: TaskSpec, profile: DataProfile) -> dict[Any, int]:
    label = profile.column(task.label_column)
    return dict((label.value_counts if label is not None else None) or {})


def _imbalanced(task: TaskSpec, profile: DataProfile) -> bool:
    counts = _label_counts(task, profile)
    if len(counts) < 2:
        return False
    return max(counts.values()) >= 3 * min(counts.values())
