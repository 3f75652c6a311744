"""`autoglm serve` as a real process, a real study through the Python client, and `kill -9` of the server mid-study.

The study trains real MiniLM LoRA trials on a few dozen review snippets whose label is in plain words. The client
follows the events from the first server, across its death, to the end on the second; the database is read
read-only, as `autoglm list` in another terminal would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.client import Client, ServiceError
from memory.records import TrialState
from memory.store import Store
from tests.agent.service_process import free_port, serve
from tests.agent.study_process import WAIT_S, autoglm_command, trial_states

STUDY = {
    "description": "fresh or rotten critic snippets, macro-F1",
    "max_rows": 60,
    "trials": 3,
    "warm_start": False,
    "pruner": "none",
    "space": {"max_length": 48, "batch_size": 16, "learning_rate": 2e-3},
    "name": "served",
}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_a_study_submitted_over_http_survives_kill_9_of_the_server(
    tmp_path: Path, env: dict[str, str], easy_reviews_csv: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "reviews.csv").write_bytes(easy_reviews_csv.read_bytes())
    made = subprocess.run([*autoglm_command(), "serve", "--create-key", "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=True)  # fmt: skip
    key = made.stdout.strip()
    assert key.startswith("agk_") and "only time" in made.stderr
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    first = serve(tmp_path, env, port, "serve-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        with pytest.raises(ServiceError) as refused:
            Client(endpoint, api_key="agk_wrong").tasks()
        assert refused.value.status == 401
        client = Client(endpoint, api_key=key)
        task = client.submit_task(
            task_type="classification", dataset_path="reviews.csv", label_column="category",
            instructions=STUDY["description"], **{k: v for k, v in STUDY.items() if k != "description"},
        )  # fmt: skip
        assert task.id == "served" and task.status in ("queued", "running")
        events: list[dict] = []
        outcome: list[str] = []
        follower = threading.Thread(target=lambda: outcome.append(task.wait(WAIT_S, on_event=events.append)))
        follower.start()

        # One trial complete and the next one training: now the server dies without a word.
        db = tmp_path / "s.db"
        deadline = time.monotonic() + WAIT_S
        rows: list[tuple] = []
        while time.monotonic() < deadline:
            rows = trial_states(db, "served")
            if any(r[2] == "complete" for r in rows) and any(r[2] == "running" and r[3] for r in rows):
                break
            assert first.poll() is None, (tmp_path / "serve-1.log").read_text()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail(f"the study never got a trial done and one training: {rows}")
        assert any(e["event"] == "progress" for e in events), "the first server streamed no progress"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        with Store(db, create=False) as store:
            study = store.get_study("served")
            done_before = {t.number: t for t in store.trials(study.id) if t.state == TrialState.complete}
            events_before = {n: len(store.events(t.id)) for n, t in done_before.items()}
        interrupted = [r for r in rows if r[2] == "running"]

        second = serve(tmp_path, env, port, "serve-2.log")  # the restart picks the study up by itself
        follower.join(WAIT_S)
        assert outcome == ["complete"], (tmp_path / "runs" / "served" / "service.log").read_text()[-3000:]
        assert events[-1]["event"] == "done" and events[-1]["state"] == "complete"
        assert events[-1]["best"]["trial"] in range(3)

        with Store(db, create=False) as store:
            study = store.get_study("served")
            trials = store.trials(study.id)
            # The budget, exactly: no trial lost, none run twice under a new number.
            assert [t.number for t in trials] == [0, 1, 2]
            assert all(t.state in (TrialState.complete, TrialState.failed) for t in trials)
            for number, before in done_before.items():  # a finished trial never ran again
                after = next(t for t in trials if t.number == number)
                assert (after.started_at, after.finished_at, after.objective) == (
                    before.started_at, before.finished_at, before.objective,
                )  # fmt: skip
                assert len(store.events(after.id)) == events_before[number]
            for row in interrupted:  # the interrupted one: the same row, queued again once, then run to its end
                kinds = [e.kind for e in store.events(row[0])]
                assert kinds.count("requeued") == 1 and kinds[-1] in ("finished", "failed")
            assert study.status == "complete"
        log = (tmp_path / "runs" / "served" / "service.log").read_text()
        assert "resume" in log or "interrupted trial(s) ran again" in log, log  # the whole log, if ever not

        adapter = task.download_adapter(tmp_path / "adapter")
        assert (adapter / "adapter_config.json").is_file() and (adapter / "autoglm.json").is_file()
        predictions = task.predict(["a wonderful film, truly wonderful", "a dreadful film, truly dreadful"])
        assert len(predictions) == 2 and set(predictions) <= {"fresh", "rotten"}
        assert client.predict(["a superb film"], study="served")[0] in ("fresh", "rotten")
        assert "# Study `served`" in task.report("md")
        for log_file in ("serve-1.log", "serve-2.log"):
            assert key not in (tmp_path / log_file).read_text()
        assert key.encode() not in db.read_bytes()
    finally:
        _stop(first)
        if second is not None:
            second.send_signal(signal.SIGTERM)  # a clean shutdown: nothing left running
            try:
                second.wait(timeout=60)
            finally:
                _stop(second)


@pytest.mark.slow
def test_a_study_started_from_the_cli_is_stopped_and_resumed_by_the_service(
    tmp_path: Path, env: dict[str, str], easy_reviews_csv: Path
) -> None:
    """`autoglm resume` runs in a terminal; the service (its queue, as the routes call it) stops it as Ctrl-C
    would and resumes it as its own study process, to the end."""
    from agent.service.config import ServiceConfig
    from agent.service.queue import StudyQueue
    from tests.seeded_study import seed_study, seeded_options, tiny_config

    options = seeded_options(tmp_path, easy_reviews_csv, "cli", max_rows=60, trials=1)
    seed_study(options, [tiny_config(max_steps=40, eval_steps=40)])
    db = Path(options.db)
    with (tmp_path / "cli.out").open("wb") as out:
        cli = subprocess.Popen([*autoglm_command(), "resume", "cli", "--db", str(db)], stdout=out,
                               stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)  # fmt: skip
    config = ServiceConfig.make(db, tmp_path, options.runs_dir, extra_env=env)
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not any(s == "running" and p for _, _, s, p in trial_states(db, "cli")):
            assert cli.poll() is None, (tmp_path / "cli.out").read_text()
            time.sleep(0.2)
        with Store(db) as store:
            queue = StudyQueue(config, store)
            stopping = queue.stop("cli")  # the CLI process is not the service's: it is signalled, and adopted
            assert stopping.state == "stopping" and stopping.pid == cli.pid
            assert cli.wait(timeout=120) != 0  # ended as after Ctrl-C
            queue.tick()
            assert store.service.job("cli").state == "stopped"
            assert [s for _, _, s, _ in trial_states(db, "cli")] == ["waiting"]  # the cut trial runs again
            assert queue.resume("cli").state == "queued"
            queue.tick()  # starts `autoglm resume cli` as the service's own study process
            while time.monotonic() < deadline and store.service.job("cli").state in ("queued", "running"):
                time.sleep(0.5)
                queue.tick()
            assert store.service.job("cli").state == "complete", Path(options.runs_dir) / "cli" / "service.log"
            assert [s for _, _, s, _ in trial_states(db, "cli")] == [TrialState.complete.value]
            queue.close()
    finally:
        _stop(cli)
