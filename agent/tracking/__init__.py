"""Tracking: a study's trials mirrored into MLflow or TensorBoard, from what the study database already holds.

- `trackers`: `MlflowTracker` and `TensorBoardTracker` behind one `Tracker` protocol, fed records read
  from the store (study, trials, per-step metrics); `StudyTracking` is what the study loop calls after
  each trial and at the end (a tracker that fails costs a warning, never a trial); `replay` is
  `autoglm track STUDY --to TARGET`, idempotent (runs are found again by their tags).

Logging happens in the study process only, so parallel or Ray trials need no tracking client. MLflow and
tensorboardX are an optional extra (`pip install open-autoglm[track]`), imported only when asked for.

May import: memory.
"""
