"""`touchstream run`: broker, database, workers and API in one foreground command.

Embedded servers start only when no broker or database is configured. Children get the resolved
addresses in their environment, so they start nothing themselves. Ctrl-C or SIGTERM stops
everything, children first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.config import Settings
from services.infra import Infra


class Platform:
    def __init__(self, settings: Settings, workers: int = 1,
                 stages: tuple[str, ...] = ("identity", "projections")):
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
                self.children.append(subprocess.Popen(
                    [sys.executable, "-m", "services.cli", *args], env=env,
                    stdout=log, stderr=subprocess.STDOUT))
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

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children = []
        self.infra.stop()


def publish_sample(base_url: str, customers: int, events: int, seed: int) -> dict:
    from services.sample import SampleSpec, generate

    batch, sent = [], 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        def flush() -> None:
            nonlocal sent
            response = client.post("/v1/touchpoints/batch", json={"events": batch})
            response.raise_for_status()
            sent += len(batch)
            batch.clear()

        first = None
        for event in generate(SampleSpec(customers=customers, events=events, seed=seed)):
            first = first or event
            batch.append(event)
            if len(batch) == 500:
                flush()
        if batch:
            flush()
    return {"sent": sent, "example": first}


def _wait_for_signal() -> None:
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop:
        time.sleep(0.2)


def run_platform(settings: Settings, sample: bool = True, customers: int = 3000,
                 events: int = 30000, seed: int = 7) -> None:
    platform = Platform(settings)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"starting Touchstream (state in {os.path.abspath(settings.state_dir)}) ...", flush=True)
        platform.start()
        base = platform.base_url
        print(f"ready: {base} (broker {platform.settings.kafka_bootstrap_servers})", flush=True)
        example = None
        if sample:
            t0 = time.monotonic()
            result = publish_sample(base, customers, events, seed)
            example = result["example"]
            print(f"published {result['sent']} sample touchpoints for {customers} customers "
                  f"in {time.monotonic() - t0:.1f}s", flush=True)
        email = (example or {}).get("customer", {}).get("email") or "someone@example.com"
        print(f"""
Try:
  curl -s '{base}/v1/customers?email={email}'
  curl -s '{base}/v1/customers/<customer_id>/timeline?limit=5'
  curl -s -X POST {base}/v1/touchpoints -H 'content-type: application/json' -d '{{"type": "call",
     "customer": {{"email": "{email}"}}, "occurred_at": "2026-01-05T10:00:00+00:00",
     "channel": "phone", "source": "crm", "payload": {{"direction": "inbound",
     "duration_s": 120, "outcome": "resolved"}}}}'
  curl -s {base}/metrics | grep touchstream_
  OpenAPI: {base}/docs
Ctrl-C stops everything.""", flush=True)
        _wait_for_signal()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...", flush=True)
        platform.stop()
        print("stopped.", flush=True)
