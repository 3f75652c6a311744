"""Running trials: everything between a `TrialConfig` and a `TrialResult`, and nothing of the planner.

This package owns one trial from end to end - loading and cleaning the data,
the fixed train/eval split, the features a config asks for, model loading
(offline first), LoRA training, the fixed evaluation harness, the JSON-line
events a trial speaks, the saved adapter and predicting with it - and the
executors that run many trials (local subprocesses, Ray tasks). It imports only
`memory`'s records and errors; it never imports `agent`.

Public API (import from the modules; this package imports nothing heavy on purpose):

- `executors.base.BaseExecutor`, `StopTrial` - the executor interface: `run(task, config, trial_dir, on_event,
  timeout_s)` and `stop_all(reason)`; raise StopTrial in on_event to prune one trial.
- `executors.local.LocalExecutor` - one subprocess per trial, a standby worker ready for the next.
- `executors.ray.RayExecutor` - one Ray task per trial, on this machine or a cluster (the `ray` extra).
- `executors.worker` - `python -m executors.worker --task T.json --config C.json --trial-dir D [--device auto]`.
- `executors.data` - `load_table(path)`, `prepare_splits(task, config) -> Splits(train, eval, labels)`.
- `executors.tasks` - what differs between task types (model head, encoding, collator, loss, metrics).
- `executors.training` - `run_trial`, the shared training loop; `save_adapter` writes the adapter and its
  `autoglm.json` (a `memory.records.AdapterMeta`).
- `executors.predict` - `predict(adapter_dir, inputs)`, `load_adapter(adapter_dir)`, `export_merged(adapter_dir, out)`.
- `executors.models` - `resolve_model(name)`, `cache_dir()`.
- `executors.export` - `export_model(adapter_dir, out, "merged"|"onnx", rows, metric, quantize=)`: an export
  measured against its adapter (`export_report.json`); `executors.memory_probe` measures one model's memory.
- `executors.onnx_predict` - `OnnxPredictor`, `predict(model.onnx or folder, inputs)`: onnxruntime and the
  tokenizer alone; it imports no torch (nor transformers).

May import: memory.
"""
