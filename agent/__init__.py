"""The planner side of a study: everything between a user's description and the best adapter, except training.

- `study`: the Python API (`tune`, `resume`, `plan_study`) that the CLI (`cli`) is a thin shell over.
- `understand`: the description and a data profile become a `TaskSpec`, with where each field came from;
  `refine` lets an LLM settle what the rules cannot.
- `graph`: the study loop as a LangGraph `StateGraph` (understand, profile, propose, execute, observe, report).
- `proposers/`: the portfolio of proposers (default start, warm start, Optuna sampler, LLM) behind one interface.
- `space`, `budget`, `pruning`: the search space for a task, what a study may spend, early stopping.
- `report`, `narrate`, `queries`, `view`: the written report, its LLM narrative, list/show/export, the live view.
- `llm/`: the only way the rest of `agent` reaches an LLM.

It imports `memory` (records, store) and `executors` (running trials); neither imports it.
"""
