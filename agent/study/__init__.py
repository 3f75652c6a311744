"""A study, start to end: the Python API that every way in (the CLI, the HTTP service, the client) is a shell over.

- `run`: `plan_study`, `tune` and `resume` for a LoRA study; `settings`: flags or a study file into `TuneOptions`.
- `graph`: the study loop as a LangGraph `StateGraph` (understand, profile, propose, execute, observe, report).
- `decode`: the decoding search (after a generation study, or a decode-only study); `batch`: many studies from one file.
- `events`: the JSON events between two snapshots (`autoglm tune --json`, and the HTTP service's event stream).

Only `agent.terminal` (and the service) import it.

May import: agent.reporting, agent.planning, agent.understanding, agent.llm, executors, memory.
"""

from agent.study.run import StudyOutcome, StudyPlan, make_executor, plan_study, resume, tune
from agent.study.settings import load_config, options_from

__all__ = ["StudyOutcome", "StudyPlan", "load_config", "make_executor", "options_from", "plan_study", "resume", "tune"]
