"""``mlflow server`` for tests: started on a free loopback port, waited for, and stopped.

A test may stop a server and start it again on the same port and store (a tracking server
that goes down and comes back).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.environment import clean_env

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    backend_uri: str
    folder: Path  # holds the artifacts and the server's log
    port: int
    workers: int = 1
    options: tuple[str, ...] = ()  # more `mlflow server` arguments, e.g. ("--allowed-hosts", ...)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = shutil.which("mlflow")
        assert mlflow is not None, "the mlflow command is not installed"
        command = [
            mlflow, "server", "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers), *self.options,
        ]  # fmt: skip
        # No job runner: the tests need none, and it is one more process importing MLflow per start.
        env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with (self.folder / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                log_tail = (self.folder / "server.log").read_text(errors="replace")[-3000:]
                assert self.process.poll() is None, f"mlflow server exited with {self.process.returncode}:\n{log_tail}"
                assert time.monotonic() < deadline, f"mlflow server did not answer in {START_TIMEOUT_S} s:\n{log_tail}"
                time.sleep(0.3)

    def signal(self, signum: int) -> None:
        """Signal the server and its workers: SIGSTOP freezes it (connections hang), SIGCONT thaws it."""
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        """Kill the server and its workers (its own process group) and wait until the port is closed."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, folder: Path, *, workers: int = 1) -> Iterator[MlflowServer]:
    folder.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(backend_uri=backend_uri, folder=folder, port=free_port(), workers=workers)
    server.start()
    try:
        yield server
    finally:
        server.stop()
