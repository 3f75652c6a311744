"""The service's shared answers: read again only when the database changed, built once however many readers ask."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.service import events
from agent.service.answers import JsonCache
from agent.service.app import create_app
from agent.service.config import ServiceConfig
from agent.service.events import Snapshots
from memory.records import TrialResult, TrialState, TuneOptions
from memory.store import Store
from tests.agent.proposer_contract import PROFILE, SPACE, TASK


def _together(n: int, call: object) -> list[object]:
    """Run `call()` in n threads at once; their answers in order."""
    answers: list[object] = [None] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        answers[i] = call()  # type: ignore[operator]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_a_memo_is_read_again_only_when_the_change_count_moves() -> None:
    count, reads = [0], []
    cache = JsonCache(lambda: count[0])

    def read() -> int:
        reads.append(1)
        return len(reads)

    assert [cache.memo("k", read) for _ in range(3)] == [1, 1, 1]
    count[0] += 1
    assert cache.memo("k", read) == 2 and cache.memo("other", read) == 3 and cache.memo("k", read) == 2


def test_readers_of_one_stamp_share_one_build() -> None:
    builds = []

    def build() -> dict[str, int]:
        builds.append(1)
        time.sleep(0.2)  # the others arrive while it builds
        return {"builds": len(builds)}

    cache = JsonCache(lambda: 0)
    bodies = {r.body for r in _together(8, lambda: cache.answer("k", "stamp 1", build))}  # type: ignore[attr-defined]
    assert bodies == {b'{"builds": 1}'} and len(builds) == 1
    assert cache.answer("k", "stamp 2", build).body == b'{"builds": 2}'  # a new stamp builds again


def test_streams_asking_together_share_one_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(tmp_path / "s.db") as store:
        study = store.create_study("s", TASK, SPACE, TuneOptions(), str(tmp_path / "run"), PROFILE)
        built, real = [], events.snapshot

        def slow(*args: object) -> object:
            built.append(1)
            time.sleep(0.2)
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(events, "snapshot", slow)
        snapshots = Snapshots()
        got = _together(6, lambda: snapshots.get(store, study, "running", ("e", 1), ("t", 1))[0])
        assert len(built) == 1 and len({id(made) for made in got}) == 1


def test_answers_follow_writes_by_another_connection_and_by_the_servers_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "reviews.csv").write_text("text,label\n" + "good,pos\nbad,neg\n" * 20)
    config = ServiceConfig.make(tmp_path / "s.db", data, tmp_path / "runs", auth=False, poll_s=0.05)
    with TestClient(create_app(config, start_queue=False)) as client:
        first = client.get("/v1/studies")
        assert first.json() == [] and first.headers["server-timing"].startswith("app;dur=")  # the app's own time
        with Store(tmp_path / "s.db") as store:  # a study process: another connection
            study = store.create_study("s", TASK, SPACE, TuneOptions(), str(tmp_path / "run"), PROFILE)
        assert [r["id"] for r in client.get("/v1/studies").json()] == ["s"]
        assert client.get("/v1/studies/s/trials").json()["trials"] == []
        for _ in range(3):  # the same answer while nothing changes
            assert client.get("/v1/studies/s/trials").json()["trials"] == []
        with Store(tmp_path / "s.db") as store:
            trial = store.add_trial(study.id, SPACE.to_config({}), "tpe", "first")
            store.claim_waiting_trial(study.id)
            store.finish_trial(trial.id, TrialResult(state=TrialState.complete, objective=0.9))
        answer = client.get("/v1/studies/s/trials").json()
        assert [(t["number"], t["state"]) for t in answer["trials"]] == [(0, "complete")] and answer["settled"] == 0
        assert client.get("/v1/studies/s").json()["detail"]["best"]["objective"] == 0.9
        client.post("/v1/studies", json={"data": "reviews.csv", "name": "q"})  # written by the server itself
        assert [r["id"] for r in client.get("/v1/studies").json()] == ["s", "q"]
        assert client.get("/v1/studies/q").json()["state"] == "queued"
