"""The Python client of `autoglm serve`: submit a study, follow it, fetch its adapter and predict, from a notebook.

    from agent.client import Client

    client = Client("http://gpu-box:8000", api_key="agk_...")        # or $AUTOGLM_API_KEY
    task = client.submit_task(task_type="classification", dataset_path="tickets.csv", label_column="queue",
                              instructions="route support tickets, optimise macro-F1", trials=8)
    task.wait(on_event=print)         # the same events `autoglm tune --json` prints
    print(task.best)                  # {"number": 3, "objective": 0.91, "test_objective": 0.89, ...}
    task.download_adapter("adapter/")
    task.predict(["my order never came"])

It needs only httpx; nothing here runs a study or loads a model.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from memory.errors import UserError

ENDED = ("stopped", "complete", "failed")


class ServiceError(UserError):
    """The service refused a request; `status` is the HTTP status and the message the service's own line."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status})")
        self.status = status
        self.detail = detail


class Client:
    """A connection to one service.

    Args:
        endpoint: the service's address, e.g. "http://127.0.0.1:8000".
        api_key: a key from `autoglm serve --create-key`; default $AUTOGLM_API_KEY; None for a `--no-auth` server.
        timeout: seconds for one ordinary request (predict loads a model the first time: give it more).
    """

    def __init__(self, endpoint: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("AUTOGLM_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r})"  # never the key

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error answer raises ServiceError with the service's message."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(response.status_code, str(detail))
        return response

    def submit_task(
        self,
        task_type: str | None = None,
        dataset_path: str | Path | None = None,
        label_column: str | None = None,
        instructions: str = "",
        *,
        upload: bool = False,
        **settings: Any,
    ) -> Task:
        """Submit a study; it runs when the server has a free slot.

        Args:
            task_type: classification, token_classification or generation (None: read from the instructions).
            dataset_path: the data, a path under the server's data root; with `upload`, a local file sent along.
            label_column: the label (or target) column (None: inferred).
            instructions: the task in plain words, as `autoglm tune "..."` takes it.
            upload: send `dataset_path` from this machine instead of naming a file on the server.
            settings: any other study-file key: trials, time, max_rows, models, space, name, seed, ...

        Raises:
            ServiceError: the settings are wrong (422, the same line the CLI prints), or the key is (401).
        """
        body: dict[str, Any] = {"description": instructions, **settings}
        if task_type is not None:
            body["task_type"] = task_type
        if label_column is not None:
            body["label"] = label_column
        if upload:
            if dataset_path is None:
                raise UserError("upload=True needs a dataset_path: the local file to send")
            path = Path(dataset_path)
            with path.open("rb") as f:
                response = self.request(
                    "POST", "/v1/studies", data={"settings": json.dumps(body)}, files={"data": (path.name, f)}
                )
        else:
            if dataset_path is not None:
                body["data"] = str(dataset_path)
            response = self.request("POST", "/v1/studies", json=body)
        return Task(self, response.json()["id"])

    def task(self, task_id: str) -> Task:
        """A study already submitted (or started from the CLI), by its id (its name)."""
        self.request("GET", f"/v1/studies/{task_id}")
        return Task(self, task_id)

    def tasks(self) -> list[dict[str, Any]]:
        """Every study the service knows: id, state, best, trials, budget spent."""
        return self.request("GET", "/v1/studies").json()

    def predict(self, data: list[Any], *, study: str | None = None, adapter: str | None = None) -> list[Any]:
        """Predictions from a study's best adapter, or from an adapter folder under the server's data root."""
        body: dict[str, Any] = {"data": data, "study": study} if study else {"data": data, "adapter": adapter}
        return self.request("POST", "/v1/predict", json=body).json()["predictions"]

    def events(self, task_id: str) -> Iterator[dict[str, Any]]:
        """The study's events as they come (server-sent), ending after `done`."""
        with self._http.stream("GET", f"/v1/studies/{task_id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise ServiceError(response.status_code, response.json().get("detail", response.text))
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []


class Task:
    """A submitted study, as the seed's SDK names it: `.id`, `.status`, `.wait()`, `.best`, and its results."""

    def __init__(self, client: Client, task_id: str) -> None:
        self.client = client
        self.id = task_id

    def __repr__(self) -> str:
        return f"Task({self.id!r})"

    def info(self) -> dict[str, Any]:
        """Everything the service says about the study (state, settings, `detail`: task, budget, leaderboard)."""
        return self.client.request("GET", f"/v1/studies/{self.id}").json()

    @property
    def status(self) -> str:
        """queued, running, stopping, stopped, complete or failed."""
        return self.info()["state"]

    @property
    def error(self) -> str | None:
        """Why the study failed, in the CLI's one line; None unless it did."""
        return self.info()["error"]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial: number, objective (validation), test_objective (held out), source; None before one."""
        detail = self.info()["detail"]
        return detail["best"] if detail else None

    def trials(self, after: int = -1) -> list[dict[str, Any]]:
        return self.client.request("GET", f"/v1/studies/{self.id}/trials", params={"after": after}).json()["trials"]

    def wait(self, timeout: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Follow the study's events until it ends (complete, failed or stopped); its final state.

        A dropped connection (a restarted server) is followed again until `timeout` seconds have passed.

        Raises:
            TimeoutError: it had not ended within `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                for event in self.client.events(self.id):
                    if on_event is not None:
                        on_event(event)
                    if event.get("event") == "done":
                        return event.get("state") or self.status
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # the server went away: try again until the deadline
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"study {self.id} had not ended after {timeout} s")
            time.sleep(1.0)
            try:
                if self.status in ENDED:
                    return self.status
            except httpx.TransportError:
                continue

    def stop(self) -> str:
        return self.client.request("POST", f"/v1/studies/{self.id}/stop").json()["state"]

    def resume(self, trials: int | None = None) -> str:
        body = {"trials": trials} if trials else {}
        return self.client.request("POST", f"/v1/studies/{self.id}/resume", json=body).json()["state"]

    def report(self, fmt: str = "md") -> str:
        """The written report, as Markdown (`md`) or HTML."""
        return self.client.request("GET", f"/v1/studies/{self.id}/report", params={"format": fmt}).text

    def download_adapter(self, folder: str | Path) -> Path:
        """Unpack the best adapter (PEFT weights, tokenizer, autoglm.json) into `folder`; `autoglm predict` takes it."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        archive = zipfile.ZipFile(io.BytesIO(self.client.request("GET", f"/v1/studies/{self.id}/adapter").content))
        root = target.resolve()
        for member in archive.namelist():
            if not (root / member).resolve().is_relative_to(root):  # an archive names files only inside its folder
                raise UserError(f"the adapter archive holds a path outside its folder: {member}")
        archive.extractall(target)
        return target

    def predict(self, data: list[Any]) -> list[Any]:
        """Predictions of the study's best adapter for `data` (texts, or rows of the task's columns)."""
        return self.client.predict(data, study=self.id)
