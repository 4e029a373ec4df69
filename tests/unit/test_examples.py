"""The requests `make run` prints work as printed, whatever port the platform was given."""

from __future__ import annotations

import shlex

from services.examples import example_requests


def test_the_printed_tail_command_follows_the_api_it_was_printed_for() -> None:
    text = example_requests("http://127.0.0.1:8731", "ann@example.com", "c-1", "Try:")
    line = next(line for line in text.splitlines() if "alerts tail" in line)
    args = shlex.split(line.split(":", 1)[1])
    assert args[args.index("--url") + 1] == "http://127.0.0.1:8731"
