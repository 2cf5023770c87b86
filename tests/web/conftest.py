"""A real dashboard for the live and browser tests: ``milestone dashboard`` started
as a process in a project directory, on a free port, stopped after the test."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MILESTONE_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def cli(cwd: Path, *args: str) -> Any:
    """``milestone ARGS`` as another process (a CLI write from outside the server);
    parsed JSON when --json is among ARGS."""
    done = subprocess.run([sys.executable, "-m", "milestones", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout) if "--json" in args else done.stdout


class Dashboard:
    """One ``milestone dashboard`` process; ``url``, ``token`` (non-local binds)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "milestones", "dashboard", "--port", "0", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.token: str | None = None
        self.url = ""
        self.lines: list[str] = []
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + 60
        while not self.url and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if not line:
                break
            self.lines.append(line)
            if m := re.search(r"token \(shown once; only its hash is kept\): (\S+)", line):
                self.token = m.group(1)
            if m := re.search(r"Dashboard on http://\S+?:(\d+)/", line):
                self.url = f"http://127.0.0.1:{m.group(1)}"
        assert self.url, "".join(self.lines)
        self.wait_ready()

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put("")

    def wait_ready(self) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/assets/app.css", timeout=2).read()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serve(project_dir: Path) -> Iterator[Any]:
    started: list[Dashboard] = []

    def start(*args: str) -> Dashboard:
        d = Dashboard(project_dir, *args)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
