"""The study store against real SQLite files: lifecycle, resume, threads, secrets."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from memory.errors import StoreError, UserError
from memory.records import (
    Budget,
    BudgetSpent,
    CategoricalParam,
    ColumnProfile,
    DataProfile,
    FloatParam,
    IntParam,
    PlannerCall,
    SearchSpace,
    TaskSpec,
    TrialEvent,
    TrialResult,
    TrialState,
    TuneOptions,
)
from memory.secrets import REDACTED, scrub_settings, scrub_text
from memory.store import Store

TASK = TaskSpec(
    task_type="classification",
    train_path="tickets.csv",
    text_columns=("text",),
    label_column="queue",
    metric="macro_f1",
    direction="maximize",
    budget=Budget(max_trials=5),
)
SPACE = SearchSpace(
    params=(
        FloatParam(name="learning_rate", low=1e-5, high=1e-3, log=True),
        IntParam(name="lora_r", low=4, high=32, step=4),
        CategoricalParam(name="scheduler", choices=("linear", "cosine")),
    ),
    fixed={"model": "sentence-transformers/all-MiniLM-L6-v2"},
)


def config(lr: float = 1e-4, r: int = 8):
    return SPACE.to_config({"learning_rate": lr, "lora_r": r, "scheduler": "linear"})


PROFILE = DataProfile(path="tickets.csv", fingerprint="abc", n_rows=100, columns={})


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "autoglm.db") as s:
        yield s


@pytest.fixture
def study(store: Store):
    return store.create_study("tickets", TASK, SPACE, TuneOptions(parallel=2), "runs/tickets", PROFILE)


def test_create_and_get_study(store: Store, study) -> None:
    assert study.name == "tickets" and study.status == "running"
    assert study.task == TASK and study.space == SPACE
    assert study.spent == BudgetSpent()
    assert study.warm_start_from == () and study.best_trial_id is None
    assert store.get_study("tickets") == study
    assert store.get_study(study.id) == study
    assert store.get_study(str(study.id)) == study  # the CLI passes ids as text
    assert [s.name for s in store.list_studies()] == ["tickets"]


def test_study_name_clash_suggests_another(store: Store, study) -> None:
    with pytest.raises(StoreError, match="tickets-2"):
        store.create_study("tickets", TASK, SPACE, TuneOptions(), "runs/x")


def test_unknown_study_points_to_list(store: Store) -> None:
    with pytest.raises(StoreError, match="autoglm list"):
        store.get_study("nope")
    assert issubclass(StoreError, UserError)


def test_update_study_merges_spent(store: Store, study) -> None:
    updated = store.update_study(
        study.id, status="interrupted", spent=BudgetSpent(seconds=12.5), warm_start_from=["old"]
    )
    assert updated.status == "interrupted"
    assert updated.spent.seconds == 12.5 and updated.spent.trials == 0.0
    assert updated.warm_start_from == ("old",)
    assert updated.updated_at >= study.updated_at
    done = store.update_study(study.id, status="complete", finished_at=123.0, best_trial_id=None)
    assert done.finished_at == 123.0 and done.warm_start_from == ("old",)
    with pytest.raises(ValueError):
        store.update_study(study.id, status="bogus")  # type: ignore[arg-type]


def test_trial_lifecycle(store: Store, study) -> None:
    first = store.add_trial(study.id, config(1e-4), "tpe", "start low", ("lora_r: rounded 7 to 8",))
    second = store.add_trial(study.id, config(3e-4), "llm")
    assert (first.number, second.number) == (0, 1)
    assert first.state == TrialState.waiting and first.repairs == ("lora_r: rounded 7 to 8",)

    claimed = store.claim_waiting_trial(study.id)
    assert claimed is not None and claimed.id == first.id  # oldest first
    assert claimed.state == TrialState.running and claimed.started_at is not None

    store.record_event(first.id, TrialEvent(kind="started"))
    store.record_event(first.id, TrialEvent(kind="progress", step=10, epoch=0.5, loss=0.7, learning_rate=1e-4))
    store.record_event(first.id, TrialEvent(kind="progress", step=20, epoch=1.0, loss=math.nan))
    store.record_event(first.id, TrialEvent(kind="eval", step=20, epoch=1.0, metrics={"macro_f1": 0.8}))
    curve = store.metric_curve(first.id)
    assert [(p.step, p.kind, p.name, p.value) for p in curve] == [
        (10, "progress", "loss", 0.7),
        (10, "progress", "learning_rate", 1e-4),
        (20, "progress", "loss", None),  # the NaN is kept as a missing value, not dropped
        (20, "eval", "macro_f1", 0.8),
    ]
    events = store.events(first.id)
    assert [e.kind for e in events] == ["started", "progress", "progress", "eval"]
    assert math.isnan(events[2].loss)  # type: ignore[arg-type]

    done = store.finish_trial(
        first.id,
        TrialResult(
            state=TrialState.complete,
            objective=0.8,
            metrics={"macro_f1": 0.8, "accuracy": 0.9},
            durations={"train": 3.0},
            peak_memory_mb=512.0,
            adapter_dir="runs/tickets/trial-0/adapter",
        ),
    )
    assert done.state == TrialState.complete and done.objective == 0.8 and done.finished_at is not None
    assert done.metrics["accuracy"] == 0.9 and done.adapter_dir.endswith("adapter")
    with pytest.raises(StoreError, match="already finished"):
        store.finish_trial(first.id, TrialResult(state=TrialState.failed, failure_kind="error"))

    nxt = store.claim_waiting_trial(study.id)
    assert nxt is not None and nxt.id == second.id
    assert store.claim_waiting_trial(study.id) is None
    failed = store.finish_trial(second.id, TrialResult(state="failed", failure_kind="oom", message="CUDA OOM"))
    assert failed.failure_kind == "oom" and failed.message == "CUDA OOM"
    assert [t.number for t in store.trials(study.id)] == [0, 1]
    assert store.last_activity(study.id) >= failed.finished_at


def test_trial_numbers_are_per_study(store: Store, study) -> None:
    other = store.create_study("other", TASK, SPACE, TuneOptions(), "runs/other")
    store.add_trial(study.id, config(), "tpe")
    assert store.add_trial(other.id, config(), "tpe").number == 0


def test_unknown_ids_raise(store: Store, study) -> None:
    with pytest.raises(StoreError):
        store.add_trial(999, config(), "tpe")
    with pytest.raises(StoreError):
        store.record_event(999, TrialEvent(kind="started"))
    with pytest.raises(ValueError):
        store.finish_trial(1, TrialResult(state="running"))


def test_requeue_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    with Store(path) as store:
        study = store.create_study("s", TASK, SPACE, TuneOptions(), "runs/s")
        a = store.add_trial(study.id, config(1e-4), "tpe")
        b = store.add_trial(study.id, config(2e-4), "tpe")
        c = store.add_trial(study.id, config(3e-4), "tpe")
        store.claim_waiting_trial(study.id)
        store.claim_waiting_trial(study.id)
        store.finish_trial(a.id, TrialResult(state="complete", objective=0.5))
        # the study process dies here: b stays "running" in the file
    with Store(path, create=False) as store:
        assert store.requeue_interrupted(study.id) == [b.id]
        trial_b = store.trial(b.id)
        assert trial_b.state == TrialState.waiting and trial_b.started_at is None
        assert store.events(b.id)[-1].message == "interrupted; queued again"
        assert store.requeue_interrupted(study.id) == []  # idempotent
        # resumed study runs it again, in number order before c
        assert store.claim_waiting_trial(study.id).id == b.id
        assert store.claim_waiting_trial(study.id).id == c.id


def test_concurrent_event_writers_lose_nothing(store: Store, study) -> None:
    trials = [store.add_trial(study.id, config(1e-4 * (i + 1)), "tpe") for i in range(4)]
    for _ in trials:
        store.claim_waiting_trial(study.id)
    per_thread = 150
    errors: list[BaseException] = []
    start = threading.Barrier(len(trials))

    def report(trial_id: int) -> None:
        try:
            start.wait()
            for step in range(per_thread):
                store.record_event(trial_id, TrialEvent(kind="progress", step=step, loss=1.0 / (step + 1)))
            store.finish_trial(trial_id, TrialResult(state="complete", objective=float(trial_id)))
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=report, args=(t.id,)) for t in trials]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for t in trials:
        assert [e.step for e in store.events(t.id)] == list(range(per_thread))
        assert len(store.metric_curve(t.id)) == per_thread
        assert store.trial(t.id).state == TrialState.complete


def test_concurrent_claims_hand_out_each_trial_once(store: Store, study) -> None:
    for i in range(20):
        store.add_trial(study.id, config(1e-5 * (i + 1)), "tpe")
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (trial := store.claim_waiting_trial(study.id)) is not None:
            with lock:
                claimed.append(trial.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(t.id for t in store.trials(study.id))


def test_planner_calls_round_trip(store: Store, study) -> None:
    trial = store.add_trial(study.id, config(), "llm")
    call = PlannerCall(
        proposer="llm", template="propose.md", prompt="p", response="r", prompt_tokens=10, outcome="accepted"
    )
    store.record_planner_call(study.id, call, trial_id=trial.id)
    store.record_planner_call(study.id, call.model_copy(update={"outcome": "error"}))
    calls = store.planner_calls(study.id)
    assert calls[0] == call and calls[1].outcome == "error"


# --------------------------------------------------------------------------- secrets

OPENAI_KEY = "sk-proj-Zx81abcDEFghiJKLmnoPQRstu"
HF_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def test_scrub_helpers() -> None:
    assert scrub_text(f"use {OPENAI_KEY} now") == f"use {REDACTED} now"
    assert scrub_text("Authorization: Bearer abc.def-123456") == f"Authorization: {REDACTED}"
    assert scrub_text('{"api_key": "plain-password"}') == f'{{"api_key": "{REDACTED}"}}'
    assert scrub_text("max_new_tokens: 32, scikit-learn") == "max_new_tokens: 32, scikit-learn"
    scrubbed = scrub_settings(
        {"llm": {"api_key": "x", "headers": {"Authorization": "y"}}, "max_llm_tokens": 5000, "Tokens": ["a"]}
    )
    assert scrubbed == {
        "llm": {"api_key": REDACTED, "headers": {"Authorization": REDACTED}},
        "max_llm_tokens": 5000,  # a number under a "token" key is a limit, not a secret
        "Tokens": [REDACTED],
    }


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "autoglm.db"
    plain = "hunter2-correct-horse"
    with Store(path) as store:
        study = store.create_study(
            "secret",
            TASK.model_copy(update={"description": f"classify tickets, my key is {OPENAI_KEY}"}),
            SPACE,
            TuneOptions(llm=f"http://127.0.0.1:8000/v1?api_key={plain}", llm_model=f"gpt {OPENAI_KEY}"),
            "runs/secret",
            PROFILE.model_copy(
                update={"columns": {"hf_token": ColumnProfile(kind="text", n_unique=1, samples=(HF_TOKEN,))}}
            ),
            plan_notes=["metric from description: 'macro-f1'", f"task_type from description: 'my key is {OPENAI_KEY}'"],
        )
        assert study.plan_notes == (
            "metric from description: 'macro-f1'",
            f"task_type from description: 'my key is {REDACTED}'",
        )
        trial = store.add_trial(study.id, config(), "llm", rationale=f"token {HF_TOKEN}")
        store.record_planner_call(
            study.id,
            PlannerCall(
                proposer="llm",
                template="propose.md",
                prompt=f"Authorization: Bearer {OPENAI_KEY}\nuse api_key={plain}",
                response=f"sure, {OPENAI_KEY}",
                outcome="error",
                detail=f"401 for key {OPENAI_KEY}",
            ),
        )
        store.record_event(trial.id, TrialEvent(kind="failed", failure_kind="error", message=f"bad key {OPENAI_KEY}"))
        store.finish_trial(trial.id, TrialResult(state="failed", failure_kind="error", message=f"{HF_TOKEN} denied"))
        # while open, recent writes sit in the WAL: read every file SQLite made
        raw_open = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert study.settings.llm.startswith("http://127.0.0.1:8000/v1?api_key=")  # non-secrets kept
        assert study.profile is not None and "hf_token" in study.profile.columns  # a column named so is data
    raw_closed = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for raw in (raw_open, raw_closed):
        for secret in (OPENAI_KEY, HF_TOKEN, plain):
            assert secret.encode() not in raw
        assert REDACTED.encode() in raw


def test_update_study_task_for_more_trials(store: Store, study) -> None:
    bigger = TASK.model_copy(update={"budget": Budget(max_trials=9)})
    assert store.update_study_task(study.id, bigger).task.budget.max_trials == 9
    other = TaskSpec.model_validate({**TASK.model_dump(), "task_type": "generation", "metric": "exact_match"})
    with pytest.raises(StoreError, match="cannot change"):
        store.update_study_task(study.id, other)


def test_space_with_tuple_choices_round_trips(store: Store) -> None:
    """Resume reads the space back from JSON; ("text",) must still be one of its choices."""
    space = SearchSpace(
        params=(CategoricalParam(name="text_columns", choices=(("text",), ("text", "title"))),),
        fixed={"model": "m"},
    )
    study = store.create_study("tuples", TASK, space, TuneOptions(), "runs/t")
    loaded = store.get_study(study.id).space
    assert loaded == space
    assert loaded.repair({"text_columns": ("text", "title")}).values["text_columns"] == ("text", "title")


def test_two_connections_claim_each_trial_once(tmp_path: Path) -> None:
    """A second process (here: a second Store on the same file) never claims a trial twice."""
    path = tmp_path / "autoglm.db"
    with Store(path) as first, Store(path) as second:
        study = first.create_study("s", TASK, SPACE, TuneOptions(), "runs/s")
        for i in range(20):
            first.add_trial(study.id, config(1e-5 * (i + 1)), "tpe")
        assert len(second.trials(study.id)) == 20  # the other connection sees committed writes
        claimed: list[int] = []
        lock = threading.Lock()

        def worker(store: Store) -> None:
            while (trial := store.claim_waiting_trial(study.id)) is not None:
                with lock:
                    claimed.append(trial.id)

        threads = [threading.Thread(target=worker, args=(s,)) for s in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == sorted(t.id for t in first.trials(study.id))


def test_a_write_cut_short_by_ctrl_c_is_rolled_back_and_the_store_still_writes(store: Store, study) -> None:
    """Ctrl-C can land between BEGIN and COMMIT; the next write (requeue on interrupt) must still work."""
    store._conn.execute("BEGIN IMMEDIATE")  # as if interrupted right after BEGIN
    store._conn.execute("insert into _migrations (name, applied_at) values ('half-written', 0)")
    trial = store.add_trial(study.id, config(), "tpe")
    store.claim_waiting_trial(study.id)
    assert store.requeue_interrupted(study.id) == [trial.id]
    names = [r[0] for r in store._conn.execute("select name from _migrations")]
    assert "half-written" not in names
