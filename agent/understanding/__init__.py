"""Reading the task: `understand` turns a description and a data profile into a `TaskSpec`, with where each
field came from; `refine` lets an LLM settle what the rules cannot, and `read_task` joins the two.

May import: agent.llm, executors, memory.
"""
