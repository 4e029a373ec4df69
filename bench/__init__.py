"""The benchmark harness (`python -m bench`): every figure beside the limit measured in the same run,
one module per measurement. It sits beside its results and profiles and is not installed with
Touchstream."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def importable(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the repository root on PYTHONPATH: the harness is not installed, and the
    processes it spawns (``python -m bench.<module>``) may start in another directory."""
    paths = [str(HERE.parent), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}
