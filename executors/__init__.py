"""Running one trial: data and features, LoRA training, evaluation, and the executors that run trials.

Public API (import from the modules; this package imports nothing heavy on purpose):

- `executors.local.LocalExecutor` - one subprocess per trial; `run(task, config, trial_dir, on_event, timeout_s)`.
- `executors.base.BaseExecutor`, `StopTrial` - the executor interface; raise StopTrial in on_event to prune.
- `executors.worker` - `python -m executors.worker --task T.json --config C.json --trial-dir D [--device auto]`.
- `executors.data` - `load_table(path)`, `prepare_splits(task, config) -> Splits(train, eval, labels)`.
- `executors.predict` - `predict(adapter_dir, inputs)`, `load_adapter(adapter_dir)`, `export_merged(adapter_dir, out)`.
- `executors.models` - `resolve_model(name)`, `cache_dir()`.
"""
