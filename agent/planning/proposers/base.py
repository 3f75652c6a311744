"""The proposer boundary: given what the study knows, suggest the next trials."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from memory.records import (
    DataProfile,
    PlannerCall,
    SearchSpace,
    TaskSpec,
    TrialConfig,
    TrialRecord,
    TrialState,
    best_trial,
)


def step_seed(seed: int, step: int) -> int:
    """The seed of a sampler drawn at `step` (trials so far) of a study seeded `seed`: fresh at every step, the same on
    resume, and unrelated across seeds. (`seed + step` made seed 1's draws seed 0's one step later, so studies at
    neighbouring seeds tried nearly the same configs.)"""
    return int(np.random.SeedSequence([seed % 2**32, step]).generate_state(1)[0])


@dataclass(frozen=True)
class Proposal:
    """A trial to run: a config inside the space, and why. `view.space.values_of(config)` gives its searched values."""

    config: TrialConfig
    source: str  # the proposer's name
    rationale: str = ""
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proposals(Sequence[Proposal]):
    """What one `propose` call returns: its proposals, and the LLM calls made for them (stored beside them)."""

    items: tuple[Proposal, ...] = ()
    calls: tuple[PlannerCall, ...] = ()

    @classmethod
    def of(cls, proposals: Iterable[Proposal], calls: Iterable[PlannerCall] = ()) -> Proposals:
        return cls(tuple(proposals), tuple(calls))

    @overload
    def __getitem__(self, index: int) -> Proposal: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Proposal, ...]: ...
    def __getitem__(self, index: int | slice) -> Proposal | tuple[Proposal, ...]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class PlannerView:
    """Everything a proposer may look at. Read-only; built fresh for every call."""

    task: TaskSpec
    space: SearchSpace
    profile: DataProfile | None  # None only for a study stored before profiles were kept
    trials: tuple[TrialRecord, ...] = ()
    seed: int = 0
    # The classical optimiser's candidates for the next trial, its own first choice first: the LLM picks one.
    candidates: tuple[Proposal, ...] = ()
    # Intermediate evaluations of the task metric, by trial number, oldest first: the LLM's curve diagnosis.
    curves: Mapping[int, tuple[float, ...]] = field(default_factory=dict)

    @property
    def finished(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.state in (TrialState.complete, TrialState.pruned, TrialState.failed))

    @property
    def complete(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.state == TrialState.complete and t.objective is not None)

    def best(self) -> TrialRecord | None:
        return best_trial(self.trials, self.task.direction)


class BaseProposer(ABC):
    """Suggests trials. Must never return a proposal outside `view.space`.

    A proposer that cannot help (an LLM that is down, no past studies) returns
    fewer proposals or none; the portfolio fills the gap. The LLM calls it made
    come back with its proposals, and the study stores them together.
    """

    name: str = "base"

    @abstractmethod
    def propose(self, view: PlannerView, n: int) -> Proposals:
        """Return up to `n` proposals, each already repaired into the space, and the LLM calls made for them."""
