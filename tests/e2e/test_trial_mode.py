"""`make run` with nothing configured: SQLite, the file broker, real separate processes.

The whole Procfile stack starts from an empty data directory on a free port; a POST with
the printed API key shows its email on the console and `Sent` in the admin within 10 s.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# What a fresh machine does not have: the test run's own database, Redis and make state.
UNSET = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


class Stack:
    def __init__(self, data_dir: str, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(CLARION_DATA_DIR=data_dir, CLARION_PORT=str(port), PYTHONUNBUFFERED="1")
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        # The venv is `make test`'s business; `-o` keeps make run from reinstalling into it
        # mid-suite when a requirements file is newer than its stamp.
        self.process = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the output:\n{self.output[-5000:]}")

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise


@pytest.fixture
def stack():
    with tempfile.TemporaryDirectory(prefix="clarion-trial-") as data_dir:
        running = Stack(data_dir, free_port())
        try:
            yield running
        finally:
            if running.process.poll() is None:
                running.stop()
            # Shown by pytest when the test fails: what the stack printed.
            print(running.output[-20000:])


def admin_session(url: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    answer = session.post(
        f"{url}/admin/login/?next=/admin/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/admin/login/"},
    )
    assert answer.url.endswith("/admin/"), "admin login failed"
    return session


def email_status_in_admin(admin: requests.Session, url: str) -> str:
    page = admin.get(f"{url}/admin/notifications/delivery/", params={"channel": "email"}).text
    cells = re.search(r'<td class="field-status">(.*?)</td>', page)
    return cells[1] if cells else ""


def test_make_run_in_trial_mode_delivers_a_posted_email_within_ten_seconds(stack, http_server):
    stack.wait_for(r"Clarion is ready on http://127\.0\.0\.1:\d+", timeout=240)
    key = stack.wait_for(r"API key: (\S+)", timeout=1)[1]
    password = stack.wait_for(r"user admin\s+password (\S+)", timeout=1)[1]
    secret = stack.wait_for(r"Webhook signing secret: (\S+)", timeout=1)[1]
    assert "DATABASE_URL" not in stack.output

    started = time.monotonic()
    answer = requests.post(
        f"{stack.url}/api/v1/notifications/",
        headers={"Authorization": f"Api-Key {key}"},
        json={
            "type": "order-shipped",
            "recipients": [
                {
                    "external_id": "42",
                    "email": "ada@example.com",
                    "phone": "+15550001001",
                    "webhook_url": f"{http_server.url}/hook",
                }
            ],
            "data": {"order_id": "A-1001"},
        },
        timeout=10,
    )
    assert answer.status_code == 202, answer.text

    stack.wait_for(r"Subject: Your order A-1001 has shipped", timeout=10)
    admin = admin_session(stack.url, password)
    while email_status_in_admin(admin, stack.url) != "Sent":
        assert time.monotonic() - started < 10, email_status_in_admin(admin, stack.url)
        time.sleep(0.2)
    assert time.monotonic() - started < 10
    assert "To: ada@example.com" in stack.output
    # The other channels work in trial mode too: SMS on the console, webhooks to loopback.
    stack.wait_for(r"SMS to \+15550001001", timeout=10)
    [hook] = http_server.wait_for(1, timeout=10)
    assert hook.json()["order_id"] == "A-1001"
    parts = dict(item.split("=", 1) for item in hook.headers["Clarion-Signature"].split(","))
    signed = f"{parts['t']}.".encode() + hook.body
    assert hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() == parts["v1"]

    # Concurrent writers on one SQLite file: the web process and both workers.
    def post(n: int) -> int:
        answer = requests.post(
            f"{stack.url}/api/v1/notifications/",
            headers={"Authorization": f"Api-Key {key}"},
            json={"type": "order-shipped", "recipients": ["42"], "data": {"order_id": f"B-{n}"}},
            timeout=30,
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(post, range(10))) == {202}
    for n in range(10):
        stack.wait_for(rf"Subject: Your order B-{n} has shipped", timeout=30)
    assert "database is locked" not in stack.output

    # The README's broadcast, filtered by attributes and tags, on SQLite too.
    for external_id, tags in (("p1", ["news"]), ("p2", [])):
        answer = requests.put(
            f"{stack.url}/api/v1/recipients/{external_id}/",
            headers={"Authorization": f"Api-Key {key}"},
            json={
                "email": f"{external_id}@example.com",
                "attributes": {"plan": "pro"},
                "tags": tags,
            },
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    answer = requests.post(
        f"{stack.url}/api/v1/broadcasts/",
        headers={"Authorization": f"Api-Key {key}"},
        json={
            "type": "weekly-deals",
            "audience": {"attributes": {"plan": "pro"}, "tags": ["news"]},
            "data": {"headline": "Trial sale", "discount": 30, "url": "https://shop.example.com"},
        },
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    stack.wait_for(r"Subject: Trial sale: up to 30% off", timeout=30)
    assert "To: p1@example.com" in stack.output and "To: p2@example.com" not in stack.output
    assert "Traceback" not in stack.output

    stack.stop()
    # Ctrl-C stops every process of the stack, not only make.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(stack.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("processes of the stack outlived Ctrl-C")
