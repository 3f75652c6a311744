"""Proposers: given what a study knows (a `PlannerView`), suggest the next trials inside its search space.

`base` holds the interface; `portfolio` shares the slots among a known-good default, `warm_start` from
similar past studies, the `classical` Optuna sampler and the `llm`, and guards every source against
repeating an out-of-memory or NaN failure.
"""
