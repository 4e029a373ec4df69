"""The README's quick start, run as written against a platform started like `make run`."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.config import Settings
from services.infra.broker import free_port
from services.platform import Platform

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def shell_commands(lines: list[str]) -> list[str]:
    """Commands from shell lines: comments and blanks skipped, backslash continuations joined."""
    commands, current = [], ""
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\") + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def quickstart_commands() -> list[str]:
    """The shell lines between the quick-start markers of the README."""
    block = re.search(r"<!-- quickstart -->\s*```sh\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no quick-start block"
    return shell_commands(block.group(1).splitlines())


def test_readme_quickstart_publish_then_read(tmp_path):
    port = free_port()
    platform = Platform(Settings(state_dir=tmp_path, http_port=port)).start()
    try:
        publish, read, complain, alerts = [c.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                                           for c in quickstart_commands()]
        accepted = json.loads(subprocess.run(publish, shell=True, check=True, capture_output=True,
                                             text=True).stdout)
        assert len(accepted["accepted"]) == 1
        deadline, profile = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            out = subprocess.run(read, shell=True, check=True, capture_output=True, text=True).stdout
            items = json.loads(out)["items"]
            if items:
                profile = items[0]
                break
            time.sleep(0.2)
        assert profile, "the published touchpoint never reached the profile"
        assert profile["counts"]["by_type"] == {"call": 1}
        assert profile["last_contact"]["event_id"] == accepted["accepted"][0]
        filed = json.loads(subprocess.run(complain, shell=True, check=True, capture_output=True,
                                          text=True).stdout)["accepted"]
        deadline, found = time.monotonic() + 30, []
        while time.monotonic() < deadline and not found:
            out = subprocess.run(alerts, shell=True, check=True, capture_output=True, text=True).stdout
            found = json.loads(out)["items"]
            time.sleep(0.2)
        assert found, "the complaint opened no alert"
        assert (found[0]["severity"], found[0]["evidence"]) == ("critical", filed)
        assert found[0]["customer_id"] == profile["customer_id"]
    finally:
        platform.stop()


def test_a_restarted_platform_refills_its_log_and_processes_new_events(tmp_path):
    """The embedded broker starts empty: the log of record is written again from the archive
    (same events, once each), positions tracked against the old log do not hide the new one's
    events, and nothing is counted twice."""
    import asyncio

    import httpx

    from services.kafka import topic_ends
    from tests.integration.pipeline import touchpoint

    sent: list[str] = []
    for kind in ("call", "email", None):
        port = free_port()
        platform = Platform(Settings(state_dir=tmp_path, http_port=port)).start()
        try:
            base = f"http://127.0.0.1:{port}"
            ends = asyncio.run(topic_ends(platform.settings, platform.settings.log_topic))
            assert sum(e + 1 for e in ends.values()) == len(sent), "the log was not refilled"
            if kind:
                event = touchpoint(kind, email="restart@example.com")
                assert httpx.post(f"{base}/v1/touchpoints", json=event).status_code == 202
                sent.append(event["event_id"])
            deadline, found = time.monotonic() + 30, {}
            while time.monotonic() < deadline and found.get("events_count") != len(sent):
                items = httpx.get(f"{base}/v1/customers",
                                  params={"email": "restart@example.com"}).json()["items"]
                found = items[0] if items else {}
                time.sleep(0.2)
            assert found.get("events_count") == len(sent)
            timeline = httpx.get(f"{base}/v1/customers/{found['customer_id']}/timeline").json()
            assert sorted(i["event_id"] for i in timeline["items"]) == sorted(sent)
            if kind is None:  # what the refilled platform serves equals a rebuild from its archive
                verify = subprocess.run(
                    [str(Path(sys.executable).with_name("touchstream")), "replay", "all", "--verify",
                     "--quiet"], env={**os.environ, "STATE_DIR": str(tmp_path)},
                    capture_output=True, text=True, timeout=120)
                assert verify.returncode == 0, verify.stdout + verify.stderr
                assert ": equal;" in verify.stdout, verify.stdout
        finally:
            platform.stop()


def _touchstream_run(tmp_path: Path, port: int, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`make run`'s command (`.venv/bin/touchstream run`), on its own state directory and port."""
    env = {**os.environ, "STATE_DIR": str(tmp_path / "state"), "HTTP_PORT": str(port)}
    return subprocess.Popen([str(Path(sys.executable).with_name("touchstream")), "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def _printed_until(proc: subprocess.Popen, last: str, timeout_s: float) -> list[str]:
    """Lines the command prints, up to the one starting with ``last`` (bounded wait)."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, proc.stdout), lines.put(None)],  # type: ignore[arg-type]
                     daemon=True).start()
    out, deadline = [], time.monotonic() + timeout_s
    while not out or not out[-1].startswith(last):
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        assert line is not None, f"exited early with {proc.wait()}: {''.join(out)}"
        out.append(line)
    return [line.rstrip("\n") for line in out]


def _sh(command: str) -> str:
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout


def test_make_run_prints_requests_for_a_customer_it_has(tmp_path):
    """The lookup `make run` prints finds a customer of the sample, its timeline is that
    customer's, and its POST reaches the same person."""
    with open(tmp_path / "stderr.log", "w") as stderr:
        proc = _touchstream_run(tmp_path, free_port(), "--customers", "300", "--events", "3000",
                                stderr=stderr)
    try:
        printed = _printed_until(proc, "Ctrl-C stops everything.", timeout_s=180)
        tried = printed[next(i for i, line in enumerate(printed) if line.startswith("Try")):]
        lookup, timeline, value, segment, pareto, post = shell_commands(
            [line.strip() for line in tried[1:8]])
        assert "<" not in timeline, "the timeline names a real customer id"
        assert any(line.startswith("value pyramid: platinum") for line in printed), printed
        assert any(line.startswith("lifecycle: prospect") for line in printed), printed
        worth = json.loads(_sh(value))
        assert worth["tier"] in {"platinum", "gold", "silver", "bronze", "prospect"}
        assert worth["stage"] and worth["explain"]["stage"] == worth["stage_reason"]
        assert "items" in json.loads(_sh(segment))
        assert json.loads(_sh(pareto))["thresholds_version"] is not None
        found = json.loads(_sh(lookup))["items"]
        assert len(found) == 1, f"{lookup} found nobody"
        customer = found[0]
        history = json.loads(_sh(timeline))
        assert history["customer_id"] == customer["customer_id"] and history["items"]
        accepted = json.loads(_sh(post))["accepted"]
        deadline = time.monotonic() + 30
        while json.loads(_sh(lookup))["items"][0]["last_contact"]["event_id"] != accepted[0]:
            assert time.monotonic() < deadline, "the printed POST never reached the same customer"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0


def test_make_run_says_plainly_that_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _touchstream_run(tmp_path, port)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert err.strip().splitlines()[-1] == (
        f"port {port} on 127.0.0.1 is in use by another program; set HTTP_PORT=... to use another")
    assert "starting" not in out and not Path(tmp_path, "state").exists(), "nothing may start"
