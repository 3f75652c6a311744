"""The terminal way in: `cli` (the `autoglm` command, a thin shell over `agent.study`) and `view` (the live view).

May import: agent.service, agent.study, agent.reporting, agent.planning, agent.understanding, agent.tracking, executors,
memory.
"""
