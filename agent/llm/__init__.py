"""Everything that talks to an LLM; the rest of `agent` reaches one only through this package.

- `client`: `LlmClient` and `LlmSettings` for any OpenAI-compatible endpoint (the only importer of `openai`), and
  `planner_call`, the `PlannerCall` record every LLM caller keeps of a request and its answer.
- `parsing`: lenient JSON parsing of answers, and finding the parameter objects inside them.
- `prompts`: rendering the templates in `prompts/`, and the text pieces they are filled with.
- `server`: `LocalLlmServer`, `transformers serve` on 127.0.0.1 for `--llm local`.
- `setup`: the `--llm` setting turned into a client (or none).

What the answers are used for lives beside its user: proposing in `agent.planning.proposers.llm`,
task refinement in `agent.understanding.refine`, the report narrative in `agent.reporting.narrate`.

May import: executors, memory.
"""
