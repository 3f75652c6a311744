"""A study, start to end: the Python API that every way in (the CLI, the HTTP service, the client) is a shell over.

- `plan`: `plan_study`, what a study would do before any trial; `run`: `tune` and `resume` a LoRA study.
- `settings`: flags or a study file into `TuneOptions`.
- `graph`: the study loop as a LangGraph `StateGraph` (understand, profile, propose, execute, observe, report).
- `decode`: the decoding search (after a generation study, or a decode-only study); `batch`: many studies from one file.
- `events`: the JSON events between two snapshots (`autoglm tune --json`, and the HTTP service's event stream).

Only `agent.terminal` (and the service) import it.

May import: agent.reporting, agent.planning, agent.understanding, agent.llm, agent.tracking, executors, memory.
"""

from agent.study.plan import StudyPlan, plan_study
from agent.study.run import StudyOutcome, resume, tune
from agent.study.settings import load_config, make_executor, options_from

__all__ = ["StudyOutcome", "StudyPlan", "load_config", "make_executor", "options_from", "plan_study", "resume", "tune"]
