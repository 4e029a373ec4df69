"""`touchstream run`: broker, database, workers and API in one foreground command.

Embedded servers start only when no broker or database is configured. Children get the resolved
addresses in their environment, so they start nothing themselves. Ctrl-C or SIGTERM stops
everything, children first.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services import examples
from services.config import Settings
from services.infra import Infra


class PortUnavailable(RuntimeError):
    """The HTTP port cannot be listened on (usually: another program has it)."""


def check_port(host: str, port: int) -> None:
    """Raise PortUnavailable, in plain words, unless the API could listen on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as uvicorn binds: a port left in TIME_WAIT by a stopped server is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortUnavailable(f"port {port} on {host} is in use by another program; "
                                      "set HTTP_PORT=... to use another") from None
            raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                  "set HTTP_HOST or HTTP_PORT") from None


class Platform:
    def __init__(self, settings: Settings, workers: int = 1,
                 stages: tuple[str, ...] = ("identity", "projections", "archive")):
        self.infra = Infra(settings)
        self.workers = workers
        self.stages = stages
        self.children: list[subprocess.Popen] = []
        self.settings = settings

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start(self, ready_timeout_s: float = 90) -> Platform:
        """Start everything; if any part fails, stop what did start and re-raise."""
        try:
            return self._start(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, ready_timeout_s: float) -> Platform:
        check_port(self.settings.http_host, self.settings.http_port)
        self.settings = self.infra.start()
        env = self.infra.child_env()
        metrics_dir = Path(self.settings.state_dir, "metrics").resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        env["HTTP_PORT"], env["HTTP_HOST"] = str(self.settings.http_port), self.settings.http_host
        logs = Path(self.settings.state_dir, "logs")
        logs.mkdir(parents=True, exist_ok=True)
        # One process per stage: each stage is CPU-bound Python, so two processes use two cores.
        commands = [("api", ["api", "--loglevel", "warning"])] + [
            (f"{stage}-{i}", ["worker", "--stages", stage, "--loglevel", "warning"])
            for i in range(self.workers) for stage in self.stages]
        for name, args in commands:
            with open(logs / f"{name}.log", "ab") as log:
                # a session of their own: Ctrl-C reaches this process only, which stops the
                # children in order (the API first, then the workers once the archive is done)
                self.children.append(subprocess.Popen(
                    [sys.executable, "-m", "services.cli", *args], env=env,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        self.wait_ready(ready_timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline, last = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            for child in self.children:
                if child.poll() is not None:
                    raise RuntimeError(f"a child process exited with {child.returncode}; "
                                       f"see {self.settings.state_dir}/logs")
            try:
                last = httpx.get(f"{self.base_url}/readyz", timeout=2)
                if last.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"platform not ready after {timeout_s}s: {last.text if last else 'no answer'}")

    def stop(self, drain_s: float = 30.0) -> None:
        """Stop the API first; with the embedded broker, whose log goes with it, let the
        workers archive what it holds (up to ``drain_s``); then everything else."""
        api, workers = self.children[:1], self.children[1:]
        self._terminate(api)
        if self.infra.broker is not None and workers and all(w.poll() is None for w in workers):
            from services import archive

            try:
                if not archive.drain(self.settings, 1.0):
                    print(f"archiving what the broker holds before it stops (up to {drain_s:.0f} s) ...",
                          flush=True)
                    if not archive.drain(self.settings, drain_s):
                        print(f"stopping with records not yet archived after {drain_s:.0f} s",
                              file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - stopping goes on whatever happens here
                print(f"could not wait for the archive: {exc!r}", file=sys.stderr, flush=True)
        self._terminate(workers)
        self.children = []
        self.infra.stop()

    @staticmethod
    def _terminate(children: list[subprocess.Popen]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_for_signal() -> None:
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop:
        time.sleep(0.2)


def run_platform(settings: Settings, sample: bool = True, customers: int = 3000,
                 events: int = 30000, seed: int = 7) -> None:
    try:
        check_port(settings.http_host, settings.http_port)
    except PortUnavailable as exc:
        sys.exit(str(exc))
    platform = Platform(settings)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"starting Touchstream (state in {os.path.abspath(settings.state_dir)}) ...", flush=True)
        platform.start()
        base = platform.base_url
        print(f"ready: {base} (broker {platform.settings.kafka_bootstrap_servers})", flush=True)
        print(examples.after_sample(base, customers, events, seed) if sample
              else examples.without_sample(base), flush=True)
        _wait_for_signal()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...", flush=True)
        platform.stop()
        print("stopped.", flush=True)
