"""The LLM prompt templates, as plain markdown files; `agent.llm.prompts.render` is the one reader."""
