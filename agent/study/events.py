"""What `autoglm tune --json` prints and the HTTP service streams: the JSON events between two study snapshots.

A pure function, like the live view: the CLI feeds it the snapshots the study loop hands out, the service the
snapshots it rebuilds from the database, so both say the same things in the same words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.reporting.report import best_so_far

if TYPE_CHECKING:
    from agent.study.graph import StudySnapshot

__all__ = ["json_events"]


def json_events(previous: StudySnapshot | None, snapshot: StudySnapshot) -> list[dict[str, Any]]:
    """What changed between two snapshots, as JSON-ready events for `autoglm tune --json`.

    `trial` when a trial appears or changes state; `progress` when a running trial reports a step or an
    evaluation; `study` when the study's note changes (proposing, running, stopped, done).
    """
    study = snapshot.study
    before = {t.id: t for t in previous.trials} if previous else {}
    events: list[dict[str, Any]] = []
    for t in snapshot.trials:
        if before.get(t.id) is None or before[t.id].state != t.state:
            events.append(
                {
                    "event": "trial",
                    "study": study.name,
                    "trial": t.number,
                    "state": t.state.value,
                    "source": t.source,
                    "objective": t.objective,
                    "metric": study.task.metric,
                    "failure_kind": t.failure_kind.value if t.failure_kind else None,
                    "message": t.message,
                    "duration_s": t.finished_at - t.started_at if t.started_at and t.finished_at else None,
                    "config": t.config.model_dump(mode="json", exclude_none=True),
                    "rationale": t.rationale or None,
                }
            )
    numbers = {t.id: t.number for t in snapshot.trials}
    for trial_id, event in snapshot.live.items():
        if previous is None or previous.live.get(trial_id) != event:
            events.append(
                {
                    "event": "progress",
                    "study": study.name,
                    "trial": numbers.get(trial_id),
                    **event.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
                    "kind": event.kind,
                }
            )
    if snapshot.note and (previous is None or previous.note != snapshot.note):
        curve = best_so_far(snapshot.trials, study.task.direction)
        events.append(
            {
                "event": "study",
                "study": study.name,
                "note": snapshot.note,
                "best": curve[-1][1] if curve else None,
                "spent": snapshot.spent.model_dump(),
            }
        )
    return events
