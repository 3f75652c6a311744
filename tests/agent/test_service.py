"""The HTTP service's routes with FastAPI's TestClient over a real SQLite file: every route, every refusal.

The queue's own behaviour (processes, stop, a restart) is tested with a stand-in interpreter in
`test_service_queue.py`; a real study through a real server is `test_service_process.py`.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.service.app import create_app
from agent.service.auth import create_key, key_digest
from agent.service.config import ServiceConfig
from memory.records import BudgetSpent, TrialEvent, TrialResult, TuneOptions
from memory.store import Store
from tests.agent.proposer_contract import PROFILE, SPACE, TASK

CSV = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(30))


@pytest.fixture()
def folders(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "reviews.csv").write_text(CSV)
    (tmp_path / "secret.csv").write_text(CSV)  # beside the data root, not in it
    return {"db": tmp_path / "s.db", "data": data, "runs": tmp_path / "runs", "tmp": tmp_path}


@pytest.fixture()
def key(folders: dict[str, Path]) -> str:
    return create_key(folders["db"], "tests")


def _config(folders: dict[str, Path], **kw: object) -> ServiceConfig:
    return ServiceConfig.make(folders["db"], folders["data"], folders["runs"], poll_s=0.05, **kw)


@pytest.fixture()
def client(folders: dict[str, Path], key: str) -> Iterator[TestClient]:
    app = create_app(_config(folders), start_queue=False)  # queued studies stay queued: these test the routes
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _seed_study(db: Path, run_dir: Path, name: str = "seeded") -> int:
    """A study as a study process leaves it: two finished trials, one running with progress, a spent budget."""
    with Store(db) as store:
        study = store.create_study(name, TASK, SPACE, TuneOptions(), str(run_dir), PROFILE)
        for i, objective in enumerate((0.7, 0.8)):
            trial = store.add_trial(study.id, SPACE.to_config({"learning_rate": 1e-3 * (i + 1)}), "tpe", f"reason {i}")
            store.claim_waiting_trial(study.id)
            for step in (1, 2):
                store.record_event(trial.id, TrialEvent(kind="progress", step=step, loss=1.0 / step, time=1.0 + step))
            scores = {"macro_f1": objective - 0.05}
            store.finish_trial(trial.id, TrialResult(state="complete", objective=objective, test_metrics=scores))
        running = store.add_trial(study.id, SPACE.to_config({"learning_rate": 4e-3}), "llm", "the LLM's reason")
        store.claim_waiting_trial(study.id)
        store.record_event(running.id, TrialEvent(kind="progress", step=3, loss=0.4, time=9.0))
        store.update_study(study.id, spent=BudgetSpent(trials=2, seconds=42.0))
        return study.id


# --------------------------------------------------------------------------- keys


def test_every_v1_route_wants_a_key_and_a_wrong_one_is_refused(folders: dict[str, Path], key: str) -> None:
    app = create_app(_config(folders), start_queue=False)
    routes = [
        ("POST", "/v1/studies"),
        ("GET", "/v1/studies"),
        ("GET", "/v1/studies/x"),
        ("GET", "/v1/studies/x/trials"),
        ("GET", "/v1/studies/x/trials/0"),
        ("GET", "/v1/studies/x/charts"),
        ("GET", "/v1/studies/x/events"),
        ("POST", "/v1/studies/x/stop"),
        ("POST", "/v1/studies/x/resume"),
        ("GET", "/v1/studies/x/report"),
        ("GET", "/v1/studies/x/adapter"),
        ("POST", "/v1/predict"),
    ]
    with TestClient(app) as c:
        for method, path in routes:
            assert c.request(method, path).status_code == 401, path
            wrong = c.request(method, path, headers={"Authorization": "Bearer agk_not-a-key"})
            assert wrong.status_code == 401, path
            assert "autoglm serve --create-key" in wrong.json()["detail"]
        assert c.get("/v1/studies", headers={"X-API-Key": key}).status_code == 200
        assert c.get("/v1/studies", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/").status_code == 200  # the page itself is public; what it shows asks for the key


def test_only_the_keys_digest_is_stored(folders: dict[str, Path], key: str) -> None:
    assert key.startswith("agk_") and len(key) > 40
    raw = folders["db"].read_bytes() + b"".join(p.read_bytes() for p in folders["tmp"].glob("s.db-*"))
    assert key.encode() not in raw
    with Store(folders["db"]) as store:
        assert store.service.has_key_hash(key_digest(key))


def test_no_auth_serves_without_a_key(folders: dict[str, Path]) -> None:
    with TestClient(create_app(_config(folders, auth=False), start_queue=False)) as c:
        assert c.get("/v1/studies").json() == []


# --------------------------------------------------------------------------- submitting


def test_a_submission_is_queued_with_its_id_and_state(client: TestClient, folders: dict[str, Path]) -> None:
    r = client.post("/v1/studies", json={"data": "reviews.csv", "trials": 2, "label": "label", "name": "mine"})
    assert r.status_code == 202 and r.json() == {"id": "mine", "state": "queued"}
    shown = client.get("/v1/studies/mine").json()
    assert shown["state"] == "queued" and shown["detail"] is None
    assert shown["settings"]["data"] == str(folders["data"] / "reviews.csv")  # resolved inside the data root
    assert [row["id"] for row in client.get("/v1/studies").json()] == ["mine"]
    again = client.post("/v1/studies", json={"data": "reviews.csv", "name": "mine"})
    assert again.status_code == 422 and "already exists" in again.json()["detail"]


def test_a_name_is_made_when_none_is_given_and_two_never_collide(client: TestClient) -> None:
    body = {"data": "reviews.csv", "description": "sort the reviews", "trials": 1}
    first, second = (client.post("/v1/studies", json=body).json()["id"] for _ in range(2))
    assert first.startswith("sort-the-reviews-") and second != first


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": "reviews.csv", "trails": 3}, "the study settings: unknown setting 'trails'; did you mean 'trials'?"),
        ({"data": "reviews.csv", "trials": "five"}, "the study settings: trials = 'five' is not allowed"),
        ({"data": "reviews.csv", "space": {"lora_rank": 8}}, "lora_rank"),
        ({"trials": 2}, "no data given"),
        ({"data": "reviews.csv", "db": "/tmp/other.db"}, "'db' is set by the server"),
        ({"data": "reviews.csv", "name": "../escape"}, "name '../escape' is not allowed"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_settings_mistakes_are_422_with_the_clis_one_line(client: TestClient, body: object, message: str) -> None:
    r = client.post("/v1/studies", json=body)
    assert r.status_code == 422 and message in r.json()["detail"]
    assert "\n" not in r.json()["detail"]


def test_the_same_mistake_reads_the_same_over_http_and_in_the_cli(client: TestClient, folders: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from agent.terminal.cli import app

    cli = CliRunner().invoke(app, ["tune", "--data", str(folders["data"] / "reviews.csv"), "--max-rows", "3"])
    assert cli.exit_code == 2
    cli_line = " ".join(cli.output.split()).split("is not allowed: ")[1]
    http = client.post("/v1/studies", json={"data": "reviews.csv", "max_rows": 3}).json()["detail"]
    assert http.endswith(cli_line)


def test_bad_json_is_a_422_that_says_where(client: TestClient) -> None:
    r = client.post("/v1/studies", content=b'{"data": "reviews.csv",', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("the body is not valid JSON")


@pytest.mark.parametrize("path", ["../secret.csv", "{tmp}/secret.csv", "link.csv", "missing.csv"])
def test_data_outside_the_data_root_is_refused(client: TestClient, folders: dict[str, Path], path: str) -> None:
    os.symlink(folders["tmp"] / "secret.csv", folders["data"] / "link.csv")  # a symlink out of the root
    r = client.post("/v1/studies", json={"data": path.format(tmp=folders["tmp"]), "trials": 1})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert ("outside the data root" in detail) if path != "missing.csv" else ("does not exist" in detail)
    assert client.get("/v1/studies").json() == []  # nothing was queued


def test_a_model_path_outside_the_data_root_is_refused(client: TestClient) -> None:
    r = client.post("/v1/studies", json={"data": "reviews.csv", "models": ["/etc"]})
    assert r.status_code == 422 and "outside the data root" in r.json()["detail"]


def test_an_uploaded_file_is_kept_by_the_server_and_used_as_the_data(
    client: TestClient, folders: dict[str, Path]
) -> None:
    settings = {"trials": 1, "label": "label", "name": "uploaded"}
    r = client.post(
        "/v1/studies", data={"settings": json.dumps(settings)}, files={"data": ("../../evil name.csv", CSV.encode())}
    )
    assert r.status_code == 202, r.text
    data = Path(client.get("/v1/studies/uploaded").json()["settings"]["data"])
    assert data.is_relative_to(folders["runs"] / ".uploads") and data.name == "evil name.csv"
    assert data.read_text() == CSV
    refused = client.post("/v1/studies", data={"settings": json.dumps({"trails": 1})}, files={"data": ("x.csv", b"a")})
    assert refused.status_code == 422
    assert [p.name for p in (folders["runs"] / ".uploads").rglob("*.csv")] == ["evil name.csv"]  # none left behind


def test_an_oversized_upload_is_413_and_nothing_is_kept(folders: dict[str, Path], key: str) -> None:
    app = create_app(_config(folders, max_upload_bytes=10_000), start_queue=False)
    big = b"text,label\n" + b"x" * 20_000 + b",pos\n"
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/studies", data={"settings": "{}"}, files={"data": ("big.csv", big)})
        assert r.status_code == 413 and "limit" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
            yield b'{"data": "reviews.csv", "description": "'
            for _ in range(30):
                yield b"y" * 1000
            yield b'"}'

        streamed = c.post("/v1/studies", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert c.get("/v1/studies").json() == []
    assert not (folders["runs"] / ".uploads").exists() or not any((folders["runs"] / ".uploads").rglob("*.csv"))


def test_cors_is_off_unless_asked(folders: dict[str, Path], key: str) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(_config(folders), start_queue=False)) as c:
        r = c.get("/v1/studies", headers={"Origin": "https://evil.example", "X-API-Key": key})
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.options("/v1/studies", headers=preflight).headers
    app = create_app(_config(folders, cors_origins=("https://ok.example",)), start_queue=False)
    with TestClient(app) as c:
        r = c.get("/v1/studies", headers={"Origin": "https://ok.example", "X-API-Key": key})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"


# --------------------------------------------------------------------------- reading a study


def test_show_list_trials_and_a_trial(client: TestClient, folders: dict[str, Path]) -> None:
    _seed_study(folders["db"], folders["runs"] / "seeded")
    [row] = client.get("/v1/studies").json()
    assert row["id"] == "seeded" and row["state"] == "running" and row["best"] == 0.8 and row["done"] == 2
    assert row["spent"]["seconds"] == 42.0 and row["limits"]["max_trials"] == 20
    shown = client.get("/v1/studies/seeded").json()
    detail = shown["detail"]
    assert shown["state"] == "running" and shown["submitted"] is False
    assert detail["best"]["number"] == 1 and detail["best"]["test_objective"] == pytest.approx(0.75)
    assert detail["task"]["metric"] == "macro_f1" and detail["budget"]["spent"]["trials"] == 2
    assert client.get(f"/v1/studies/{detail['id']}").json()["id"] == str(detail["id"])  # by numeric id too

    everything = client.get("/v1/studies/seeded/trials").json()
    assert [t["number"] for t in everything["trials"]] == [0, 1, 2] and everything["settled"] == 1
    assert everything["trials"][2]["rationale"] == "the LLM's reason" and everything["trials"][2]["state"] == "running"
    newer = client.get("/v1/studies/seeded/trials", params={"after": everything["settled"]}).json()
    assert [t["number"] for t in newer["trials"]] == [2]  # only what is new or may still change
    assert client.get("/v1/studies/seeded/trials", params={"after": -5}).status_code == 422

    trial = client.get("/v1/studies/seeded/trials/1").json()
    assert trial["objective"] == 0.8 and trial["config"]["learning_rate"] == pytest.approx(2e-3)
    assert trial["curves"]["progress:loss"] == [[1, 1.0], [2, 0.5]]
    assert [e["kind"] for e in trial["events"]] == ["progress", "progress"]
    assert client.get("/v1/studies/seeded/trials/9").status_code == 404

    charts = client.get("/v1/studies/seeded/charts").json()
    assert charts["best_so_far"] == [[0, 0.7], [1, 0.8]] and charts["loss_curves"]["1"] == [[1, 1.0], [2, 0.5]]
    assert charts["importance"] is None and "Skipped" in charts["importance_caption"]


@pytest.mark.parametrize(
    "path",
    ["/v1/studies/nope", "/v1/studies/nope/trials", "/v1/studies/nope/trials/0", "/v1/studies/nope/charts",
     "/v1/studies/nope/events", "/v1/studies/nope/report", "/v1/studies/nope/adapter"],
)  # fmt: skip
def test_an_unknown_study_is_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_stop_and_resume_of_an_unknown_study_are_404(client: TestClient) -> None:
    assert client.post("/v1/studies/nope/stop").status_code == 404
    assert client.post("/v1/studies/nope/resume").status_code == 404


def test_events_are_the_clis_json_events_ending_with_done(client: TestClient, folders: dict[str, Path]) -> None:
    study_id = _seed_study(folders["db"], folders["runs"] / "seeded")
    with Store(folders["db"]) as store:
        store.update_study(study_id, status="complete", stop_reason="trial budget used")
    with client.stream("GET", "/v1/studies/seeded/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["trial", "trial", "trial"] and kinds[-1] == "done"
    assert "progress" in kinds and "study" in kinds
    trial = events[1]
    assert set(trial) >= {"study", "trial", "state", "source", "objective", "metric", "config", "rationale"}
    assert trial["objective"] == 0.8 and trial["rationale"] == "reason 1"
    assert events[-1]["state"] == "complete" and events[-1]["best"] == {"trial": 1, "objective": 0.8}


def test_the_event_stream_sends_what_changes_while_it_is_open(client: TestClient, folders: dict[str, Path]) -> None:
    study_id = _seed_study(folders["db"], folders["runs"] / "seeded")
    seen: list[dict] = []
    with client.stream("GET", "/v1/studies/seeded/events") as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
            if len(seen) == 4:  # the opening snapshot has arrived: now a study process writes
                with Store(folders["db"]) as store:
                    trial = store.add_trial(study_id, SPACE.to_config({"learning_rate": 1e-4}), "tpe", "new")
                    store.update_study(study_id, status="complete")
            if seen and seen[-1]["event"] == "done":
                break
    assert any(e["event"] == "trial" and e["trial"] == trial.number and e["state"] == "waiting" for e in seen[4:])


def test_a_queued_study_streams_its_state_then_stops(client: TestClient) -> None:
    client.post("/v1/studies", json={"data": "reviews.csv", "name": "q"})
    assert client.post("/v1/studies/q/stop").json() == {"id": "q", "state": "stopped"}
    with client.stream("GET", "/v1/studies/q/events") as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["event"] for e in events] == ["study", "done"] and events[-1]["state"] == "stopped"


def test_stop_and_resume_follow_the_state(client: TestClient, folders: dict[str, Path]) -> None:
    client.post("/v1/studies", json={"data": "reviews.csv", "name": "q"})
    assert client.post("/v1/studies/q/resume").status_code == 409  # queued: nothing to resume
    assert client.post("/v1/studies/q/stop").status_code == 202
    again = client.post("/v1/studies/q/stop")
    assert again.status_code == 409 and "nothing to stop" in again.json()["detail"]
    assert client.post("/v1/studies/q/resume", json={"trials": 0}).status_code == 422
    assert client.post("/v1/studies/q/resume", content=b"{nope").status_code == 422
    assert client.post("/v1/studies/q/resume").json() == {"id": "q", "state": "queued"}
    _seed_study(folders["db"], folders["runs"] / "cli-study", "cli-study")  # started from the CLI, not here
    refused = client.post("/v1/studies/cli-study/stop")  # no CLI process holds it now
    assert refused.status_code == 409 and "is not running; nothing to stop" in refused.json()["detail"]
    # Its lock names a process that is no autoglm study (this test's own): never signalled.
    from memory.study_lock import study_lock

    with study_lock(folders["runs"] / "cli-study", "cli-study"):
        stranger = client.post("/v1/studies/cli-study/stop")
        assert stranger.status_code == 409 and "not an autoglm study" in stranger.json()["detail"]
        busy = client.post("/v1/studies/cli-study/resume")
        assert busy.status_code == 409 and "running" in busy.json()["detail"]
    # Not running: the service takes it into its queue and resumes it.
    assert client.post("/v1/studies/cli-study/resume").json() == {"id": "cli-study", "state": "queued"}


def test_report_and_adapter(client: TestClient, folders: dict[str, Path]) -> None:
    run_dir = folders["runs"] / "seeded"
    _seed_study(folders["db"], run_dir)
    assert "no report yet" in client.get("/v1/studies/seeded/report").json()["detail"]
    assert "no best adapter yet" in client.get("/v1/studies/seeded/adapter").json()["detail"]
    run_dir.mkdir(parents=True)
    (run_dir / "report.md").write_text("# Study `seeded`\n")
    (run_dir / "report.html").write_text("<h1>Study seeded</h1>")
    (run_dir / "best_adapter" / "sub").mkdir(parents=True)
    (run_dir / "best_adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "best_adapter" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    html = client.get("/v1/studies/seeded/report")
    assert html.headers["content-type"].startswith("text/html") and "<h1>" in html.text
    md = client.get("/v1/studies/seeded/report", params={"format": "md"})
    assert md.headers["content-type"].startswith("text/markdown") and md.text.startswith("# Study")
    assert client.get("/v1/studies/seeded/report", params={"format": "pdf"}).status_code == 422
    archive = client.get("/v1/studies/seeded/adapter")
    assert archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(names) == ["adapter_config.json", "sub/w.bin"]


def test_predict_refusals(client: TestClient, folders: dict[str, Path]) -> None:
    _seed_study(folders["db"], folders["runs"] / "seeded")
    assert client.post("/v1/predict", content=b"{").status_code == 422
    assert client.post("/v1/predict", json={"study": "seeded"}).status_code == 422  # no data
    assert client.post("/v1/predict", json={"data": ["x"]}).status_code == 422  # no model named
    assert client.post("/v1/predict", json={"study": "nope", "data": ["x"]}).status_code == 404
    assert client.post("/v1/predict", json={"study": "seeded", "data": ["x"]}).status_code == 409
    outside = client.post("/v1/predict", json={"adapter": "../", "data": ["x"]})
    assert outside.status_code == 422 and "outside the data root" in outside.json()["detail"]
    too_many = client.post("/v1/predict", json={"study": "seeded", "data": ["x"] * 1001})
    assert too_many.status_code == 422 and "at most 1000" in too_many.json()["detail"]


def test_the_page_and_its_assets_come_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<script" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200, asset
    assert "http" not in page.text.split("<body")[0].replace("http-equiv", "")  # nothing fetched from elsewhere
    assert client.get("/openapi.json").json()["paths"]["/v1/studies"]
    # The API's own docs too: Swagger UI and ReDoc load their scripts and styles from this server.
    for docs in ("/docs", "/redoc"):
        html = client.get(docs)
        assert html.status_code == 200 and "/openapi.json" in html.text, docs
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'", html.text)
        assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
        for asset in (s for s in sources if s.endswith((".js", ".css"))):
            assert client.get(asset).status_code == 200, asset
