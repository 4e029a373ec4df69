"""The pipeline of an earlier commit, measured in the same run, on the same servers and events:
what the changes since then cost, free of the machine's drift between runs.

The earlier code runs from a git worktree of that commit with this virtualenv's packages: its
own migration makes its tables, its workers run as ``make run`` ran them then, and the records
carry the mark its doors wrote then.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.config import Settings

# The last commit before "Nothing a channel sends can stop the stream" (poison isolation,
# sealed records, contiguous positions, the registry, the order ledger and the change feed).
DEFAULT_REF = "c5aefb8"
BASELINE_TYPES = ("call", "email", "web_visit", "order", "complaint")  # what it can validate
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Baseline:
    ref: str
    source: Path
    # how that code's doors marked a validated record
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("ts-validated", b"touchpoint/1")])
    sealed: bool = False  # a commit whose doors seal records with the signing key, as ours do

    @classmethod
    def checkout(cls, ref: str, where: Path, sealed: bool = False) -> Baseline:
        where = where.resolve()
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO,
                       capture_output=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), ref], cwd=REPO,
                       check=True, capture_output=True)
        return cls(ref, where, sealed=sealed)

    def migrate(self, settings: Settings) -> None:
        subprocess.run([sys.executable, "-c", "import sys; from services.store import migrate; "
                        "migrate(sys.argv[1])", settings.database_url],
                       cwd=self.source, env={**os.environ, "PYTHONPATH": str(self.source)},
                       check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run(["git", "worktree", "remove", "--force", str(self.source)], cwd=REPO,
                       capture_output=True)
