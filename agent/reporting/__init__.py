"""What a study tells: `report` (report.md/.html, best_config.yaml, the best adapter), `plots`, `narrate` (the
LLM's narrative) and `queries` (the read views behind `list`, `show`, `export`, `status`; their records in
`views`).

It reads the store and never runs a trial.

May import: agent.planning, agent.llm, memory.
"""
