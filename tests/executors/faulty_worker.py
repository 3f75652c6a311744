"""A trial worker that breaks on purpose, for tests: `executors.worker` with its training loss rigged.

    LocalExecutor(worker_module="tests.executors.faulty_worker", env={"AUTOGLM_TEST_FAULT": "nan"})

AUTOGLM_TEST_FAULT=nan makes the loss NaN from the second training batch on;
AUTOGLM_TEST_FAULT=oom raises torch.OutOfMemoryError at the first. The rest is
the real worker in a real subprocess: its event stream, its failure mapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from executors import worker

FAULT_ENV = "AUTOGLM_TEST_FAULT"
FAULTS = ("nan", "oom")


def inject(fault: str) -> None:
    """Rig every task handler's training loss with the fault."""
    if fault not in FAULTS:
        raise SystemExit(f"{FAULT_ENV} must be one of {', '.join(FAULTS)}, not {fault!r}")
    from executors.tasks import HANDLERS

    for handler in HANDLERS.values():
        handler.loss = _rigged(handler.loss, fault)  # type: ignore[method-assign]


def _rigged(loss: Callable[..., Any], fault: str) -> Callable[..., Any]:
    batches = 0

    def rigged_loss(self: Any, model: Any, batch: Any) -> Any:
        nonlocal batches
        batches += 1
        if fault == "oom":
            import torch

            raise torch.OutOfMemoryError(f"{FAULT_ENV}=oom: injected out-of-memory")
        value = loss(self, model, batch)
        return value * float("nan") if batches >= 2 else value

    return rigged_loss


if __name__ == "__main__":
    inject(os.environ.get(FAULT_ENV, ""))
    worker.exit_now(worker.main())
