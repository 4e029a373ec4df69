"""The README's quick start, run as written against a platform started like `make run`."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from services.config import Settings
from services.infra.broker import free_port
from services.platform import Platform

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_commands() -> list[str]:
    """The shell lines between the quick-start markers of the README."""
    block = re.search(r"<!-- quickstart -->\s*```sh\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no quick-start block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\") + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def test_readme_quickstart_publish_then_read(tmp_path):
    port = free_port()
    platform = Platform(Settings(state_dir=tmp_path, http_port=port)).start()
    try:
        publish, read = [c.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
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
    finally:
        platform.stop()


def test_a_restarted_platform_processes_new_events(tmp_path):
    """The embedded broker starts empty; positions tracked against the old log must not hide
    the new one's events."""
    import httpx

    from tests.integration.pipeline import touchpoint

    for run, kind in enumerate(("call", "email")):
        port = free_port()
        platform = Platform(Settings(state_dir=tmp_path, http_port=port)).start()
        try:
            base = f"http://127.0.0.1:{port}"
            event = touchpoint(kind, email="restart@example.com")
            assert httpx.post(f"{base}/v1/touchpoints", json=event).status_code == 202
            deadline, count = time.monotonic() + 30, 0
            while time.monotonic() < deadline and count < run + 1:
                items = httpx.get(f"{base}/v1/customers",
                                  params={"email": "restart@example.com"}).json()["items"]
                count = items[0]["events_count"] if items else 0
                time.sleep(0.2)
            assert count == run + 1
        finally:
            platform.stop()
