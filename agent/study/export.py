"""`autoglm export STUDY --format merged|onnx`: the study's best adapter, exported and measured on its test split.

The export itself (and its proof) is `executors.export`; this module finds the adapter and the rows the
planner never saw, so the figures are the study's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from executors.data import prepare_splits
from executors.export import ExportFormat, ExportReport, export_model
from memory.errors import UserError
from memory.store import Store


def default_output(run_dir: str | Path, fmt: str, quantize: str | None) -> Path:
    """runs/<study>/export-onnx (or -onnx-int8, -merged): beside the adapter it came from."""
    return Path(run_dir) / f"export-{fmt}{'-' + quantize if quantize else ''}"


def export_study(
    db: str,
    study: str,
    fmt: str,
    output: str | Path | None = None,
    quantize: str | None = None,
    repeats: int = 30,
    memory: bool = True,
) -> ExportReport:
    """Export a study's best adapter as `fmt` (merged or onnx, optionally int8), measured on its test split.

    Raises:
        UserError: the study has no best adapter yet, or its data cannot be read again from here.
    """
    with Store(db, create=False) as store:
        record = store.get_study(study)
    adapter = Path(record.run_dir) / "best_adapter"
    if not (adapter / "autoglm.json").is_file():
        raise UserError(
            f"study {record.name} has no best adapter at {adapter}; let a trial complete "
            f"(autoglm resume {record.name}) or write it again with: autoglm report {record.name}"
        )
    # The same cleaning and seeded splits as the study: the test rows are the ones the planner never saw.
    splits = prepare_splits(record.task)
    rows, split = (splits.test, "test") if len(splits.test) else (splits.eval, "validation")
    out = Path(output) if output else default_output(record.run_dir, fmt, quantize)
    report = export_model(
        adapter, out, cast(ExportFormat, fmt), rows, record.task.metric, split=split, quantize=quantize,
        repeats=repeats, memory=memory,
    )  # fmt: skip
    if split == "validation":
        report.notes.append("the study had too few rows for a test split; measured on its validation split")
        report.write(out)
    return report
