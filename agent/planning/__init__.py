"""Choosing the next trials: `space` (the search space of a task and its opening), `cost` (what a trial costs on
this machine), `budget`, `pruning`, `overrides` (the user's `space:`), `proposers/` (the portfolio: default start,
warm start, Optuna, LLM) and `decoding` (the decoding search's space and proposals).

May import: agent.llm, executors, memory.
"""
