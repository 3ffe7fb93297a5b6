"""Real Celery worker (and beat-like) processes for end-to-end tests.

Workers get the test database and the test broker through their environment, so they see
exactly what the test committed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(
        self,
        env: dict[str, str],
        queues: list[str],
        *,
        concurrency: int = 2,
        name: str = "test",
        pool: str = "prefork",
        nice: int = 0,
    ) -> None:
        self.env = env
        self.queues = queues
        self.concurrency = concurrency
        self.name = name
        self.pool = pool
        self.nice = nice
        self.process: subprocess.Popen | None = None
        self.nodename = ""
        self.output: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 30) -> WorkerProcess:
        self._ready.clear()
        # A positive nice lowers the worker's CPU priority (nice execs, so the pid is the worker's).
        niceness = ["nice", "-n", str(self.nice)] if self.nice else []
        # Unique per start, for remote control (`destination=[worker.nodename]`).
        self.nodename = f"{self.name}-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
        self.process = subprocess.Popen(
            [
                *niceness,
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                ",".join(self.queues),
                "-c",
                str(self.concurrency),
                "-P",
                self.pool,
                "-n",
                self.nodename,
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("worker did not start:\n" + "".join(self.output[-50:]))
        return self

    def _pump(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.output.append(line)
            if " ready." in line:
                self._ready.set()

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def kill(self) -> None:
        """kill -9 the whole worker (main process and its pool children)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
