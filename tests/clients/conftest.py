"""Fixtures for the client compatibility tests: a real `silt serve` per test, real clients.

Every broker binds 127.0.0.1 on a port the OS picks, keeps its data in the test's temporary
directory, and is stopped by the test that started it (by PID), so nothing is left behind.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SILT_BIN = Path(os.environ.get("SILT_TEST_BIN", REPO / "target" / "debug" / "silt"))
NODE_DIR = Path(__file__).resolve().parent
READY = re.compile(r"silt is serving.*kafka=(\S+):(\d+) admin=(\S+):(\d+)")


class Silt:
    """One `silt serve` process and its data directory."""

    def __init__(self, data_dir: Path, log_path: Path, extra_args=(), env=None):
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.kafka_port = 0
        self.admin_port = 0
        self.process = None
        self.lines = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout=60):
        """Starts the broker and waits for its 'serving' line (the ports are read from it)."""
        args = [
            str(SILT_BIN), "serve",
            "--data-dir", str(self.data_dir),
            "--kafka-addr", f"127.0.0.1:{self.kafka_port}",
            "--admin-addr", f"127.0.0.1:{self.admin_port}",
            *self.extra_args,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("SILT_TEST_LOG", "info"), **self.env}
        env = {k: v for k, v in env.items() if not k.startswith("SILT_") or k in self.env}
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.PIPE, env=env, text=True)
        ready = threading.Event()

        def pump(stream=self.process.stderr):
            for line in stream:
                log.write(line)
                log.flush()
                self.lines.append(line)
                match = READY.search(line)
                if match:
                    self.kafka_port = int(match.group(2))
                    self.admin_port = int(match.group(4))
                    ready.set()
            log.close()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None:
                raise RuntimeError(f"silt exited with {self.process.returncode}:\n{''.join(self.lines[-20:])}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"silt did not start in {timeout}s:\n{''.join(self.lines[-20:])}")
        return self

    def stop(self, timeout=60) -> int:
        """SIGTERM and wait: returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        """SIGKILL: no flush, no clean-shutdown marker."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, hard=False):
        """Stops (SIGTERM, or SIGKILL when hard) and starts again on the same ports."""
        if hard:
            self.kill()
        else:
            assert self.stop() == 0, "clean shutdown"
        return self.start()

    def log_text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def silt_factory(tmp_path):
    started = []

    def make(name="silt", extra_args=(), env=None):
        broker = Silt(tmp_path / name, tmp_path / f"{name}.log", extra_args, env)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        code = broker.stop()
        assert code == 0, f"silt exited with {code} at shutdown:\n{broker.log_text()[-4000:]}"
        assert "panicked" not in broker.log_text(), broker.log_text()[-4000:]


@pytest.fixture
def silt(silt_factory):
    """A fresh broker for the test."""
    return silt_factory()


def run_node(script: str, args: dict, timeout=120) -> dict:
    """Runs tests/clients/js/<script> with JSON args; returns its JSON output."""
    result = subprocess.run(
        ["node", str(NODE_DIR / "js" / script)],
        input=json.dumps(args), capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR,
    )
    if result.returncode != 0:
        raise AssertionError(f"node {script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def wait_for(condition, timeout=30, interval=0.05, what="condition"):
    """Polls `condition` until it returns a truthy value, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
