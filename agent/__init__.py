"""The planner side of a study: everything between a user's description and the best adapter, except training.

Its subpackages, each importing only those listed after it (and `executors`, `memory`):

- `terminal`: the CLI (`autoglm`) and the live view, thin shells over `study`.
- `service`: `autoglm serve`, the HTTP API, its queue of study processes and its web page; another shell over `study`.
- `study`: the Python API (`tune`, `resume`, `plan_study`), the study loop as a LangGraph graph, decoding, batches.
- `tracking`: a study mirrored into MLflow or TensorBoard from its database (`autoglm track`, `--track`).
- `reporting`: the written report, its plots and LLM narrative, and the read views (list, show, export).
- `planning`: the search space, prices and budgets, pruning, the proposers, and the decoding search's space.
- `understanding`: the description and a data profile become a `TaskSpec`; an LLM settles what the rules cannot.
- `llm`: the only way the rest of `agent` reaches an LLM.

`agent.client` is the Python client of the service (httpx only).

It imports `memory` (records, store) and `executors` (running trials); neither imports it.
`tests/test_layers.py` checks each subpackage's "May import" line against what it really imports.

May import: executors, memory.
"""
