"""The HTTP way in: `autoglm serve`, a FastAPI app over the same study API the CLI is a shell over.

- `app`: thin routes under `/v1` (submit, list, show, trials, events, stop, resume, report, adapter, predict) and
  the web page at `/`; `queue`: the queue of study processes, each an `autoglm tune` (or `resume`) of its own,
  kept in the database so a restart picks it up; `auth`: API keys (only their sha256 is stored);
  `submit`: a submission's settings, validated as the CLI validates a study file, its data kept inside the data
  root; `events`: the server-sent events, the same as `autoglm tune --json` prints; `answers`: the read routes'
  answers, built once per change of the database and shared by every reader; `adapters`: loaded adapters for
  `/v1/predict`, kept in a small LRU. `static/`: the web page (plain HTML, CSS and JS, no CDN).

May import: agent.study, agent.reporting, executors, memory.
"""
