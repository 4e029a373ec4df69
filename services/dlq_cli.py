"""`touchstream dlq list|show|replay`: find a dead letter, read it, publish it again once repaired.

A dead letter (services/processors/dlq.py) keeps the original bytes of a record a stage refused.
``replay`` publishes it to ``touchpoints.raw`` as the gateway would have accepted it: the event
(the original, or the repaired one of ``--fix``) is validated by the gateway's rules, stamped with
the time it is accepted, keyed and sealed by ``services.wire`` and sent with acks=all. A dead
letter is replayed once:

1. the replay holds an advisory lock on the dead letter's id while it runs: a second replay of the
   same dead letter meanwhile is refused (the lock goes with the session if the process dies);
2. one transaction moves it from ``open`` to ``replaying`` (a conditional UPDATE), keeps the event
   about to be published in ``replay_event`` and writes who started the replay, and when;
3. the event is published; the broker acknowledges it;
4. one transaction marks it ``replayed``, with where the event landed.

A crash, or a broker that does not acknowledge, between 2 and 4 leaves the dead letter
``replaying``. The next ``dlq replay`` of it publishes the kept event again, with the same event
id: the event may then be on ``touchpoints.raw`` twice, and the stages count an event id once, so
it reaches the read models once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
from datetime import UTC, datetime
from typing import Any

from services.terminal import printable

_REPLAY_LOCKS = 1 << 62  # advisory lock keys of their own: this plus a dead letter's id
ERROR_WIDTH = 100  # characters of the error a `list` line shows


class Refusal(Exception):
    """What a command could not do, as it tells the operator; ``status`` is the exit status
    (2: a usage error or an invalid event, 1: nothing could be done)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def _time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _position(topic: str, partition: int, offset: int) -> str:
    return f"{printable(topic)}[{partition}]@{offset}"


# -- list and show ---------------------------------------------------------------------------------

async def _list(conn: Any, args: argparse.Namespace, _settings: Any) -> int:
    cur = await conn.execute(
        "SELECT id, stage, failed_at, kind, source_topic, source_partition, source_offset, status, "
        "error FROM dead_letters WHERE (%(stage)s::text IS NULL OR stage = %(stage)s) "
        "AND (%(reason)s::text IS NULL OR strpos(lower(error), lower(%(reason)s)) > 0) "
        "ORDER BY failed_at DESC, id DESC LIMIT %(limit)s",
        {"stage": args.stage, "reason": args.reason, "limit": args.limit})
    found = await cur.fetchall()
    if not found:
        print("no dead letters" + (" match" if args.stage or args.reason else ""), file=sys.stderr)
        return 0
    print(f"{'ID':>6}  {'STAGE':<11}  {'FAILED AT':<20}  {'KIND':<7}  {'SOURCE':<30}  {'STATUS':<9}  ERROR")
    for d in found:
        error = printable(d["error"])
        error = error if len(error) <= ERROR_WIDTH else error[:ERROR_WIDTH - 3] + "..."
        source = _position(d["source_topic"], d["source_partition"], d["source_offset"])
        print(f"{d['id']:>6}  {printable(d['stage']):<11}  {_time(d['failed_at']):<20}  "
              f"{printable(d['kind']):<7}  {source:<30}  {printable(d['status']):<9}  {error}")
    return 0


async def _show(conn: Any, args: argparse.Namespace, _settings: Any) -> int:
    d = await _letter(conn, args.id)
    cur = await conn.execute("SELECT done_at, action, done_by, detail FROM dead_letter_history "
                             "WHERE dead_letter_id = %s ORDER BY done_at, action", (args.id,))
    history = await cur.fetchall()
    print(f"dead letter {d['id']}: {printable(d['status'])}")
    print(f"  stage:      {printable(d['stage'])} (kind {printable(d['kind'])})")
    print(f"  failed at:  {_time(d['failed_at'])}")
    print(f"  source:     {_position(d['source_topic'], d['source_partition'], d['source_offset'])}")
    print(f"  dlq record: partition {d['dlq_partition']}, offset {d['dlq_offset']}")
    print(f"  error:      {printable(d['error'])}")
    print("  errors:")
    for e in d["errors"]:
        print(f"    {printable(e.get('field') or '<event>')}: {printable(e.get('reason'))}")
    print("\n".join(_readable("original", bytes(d["original"]))))
    if d["replay_event"] is not None:
        print("\n".join(_readable("replayed event", bytes(d["replay_event"]))))
    print("  history:" if history else "  history:    nothing done yet")
    for h in history:
        detail = {"event": h["detail"].pop("event_id", None), **h["detail"]}
        print(f"    {_time(h['done_at'])}  {h['action']:<9}  by {printable(h['done_by'])}  "
              + ", ".join(f"{k} {printable(v)}" for k, v in detail.items()))
    return 0


def _readable(label: str, data: bytes) -> list[str]:
    """Bytes of a record, for reading: JSON indented when they parse, else text, else hex."""
    import orjson

    try:
        pretty = orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
        return [f"  {label} ({len(data)} bytes, JSON):",
                *(f"    {printable(line)}" for line in pretty.splitlines())]
    except orjson.JSONDecodeError:
        pass
    try:
        return [f"  {label} ({len(data)} bytes, not JSON):", f"    {printable(data.decode())}"]
    except UnicodeDecodeError:
        return [f"  {label} ({len(data)} bytes, not UTF-8, in hex):",
                *(f"    {data[i:i + 32].hex(' ')}" for i in range(0, len(data), 32))]


async def _letter(conn: Any, letter_id: int) -> dict[str, Any]:
    cur = await conn.execute("SELECT * FROM dead_letters WHERE id = %s", (letter_id,))
    found = await cur.fetchone()
    if found is None:
        raise Refusal(f"no dead letter {letter_id} (`touchstream dlq list` shows their ids)")
    return found


async def _last(conn: Any, letter_id: int, action: str) -> str:
    """When and by whom ``action`` was last done to the dead letter, and to which event."""
    cur = await conn.execute("SELECT done_at, done_by, detail FROM dead_letter_history "
                             "WHERE dead_letter_id = %s AND action = %s ORDER BY done_at DESC LIMIT 1",
                             (letter_id, action))
    h = await cur.fetchone()
    if h is None:
        return ""
    return (f"at {_time(h['done_at'])} by {printable(h['done_by'])}, "
            f"event {printable(h['detail'].get('event_id'))}")


# -- replay ----------------------------------------------------------------------------------------

class Publisher:
    """Sends events to ``touchpoints.raw`` the way the gateway sends one: ``wire.raw_record``
    (its key and seal), the platform's partitioner, acks=all. Connects on first use."""

    def __init__(self, settings: Any):
        self.settings = settings
        self._producer: Any = None

    async def ready(self) -> None:
        from aiokafka.errors import KafkaError

        from services.kafka import producer

        if self._producer is not None:
            return
        self._producer = producer(self.settings, "touchstream-dlq")
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            self._producer = None
            raise Refusal(f"cannot reach the broker {self.settings.kafka_bootstrap_servers}: {exc}") from None

    async def send(self, event: Any) -> Any:
        """The broker's acknowledgement (partition, offset); raises what prevented it."""
        from services.wire import raw_record, signing_key

        key, value, headers = raw_record(event, signing_key(self.settings.signing_key))
        async with asyncio.timeout(self.settings.produce_timeout_s):
            return await (await self._producer.send(self.settings.raw_topic, key=key, value=value,
                                                    headers=headers))

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


def _accepted(data: bytes, source: str, max_bytes: int) -> Any:
    """The event in ``data`` as the gateway accepts a request body (size, JSON, the event models,
    stamped with the time it is accepted); else a Refusal naming each field and its reason."""
    import orjson

    from events import InvalidEvent, parse_touchpoint

    if len(data) > max_bytes:
        raise Refusal(f"{source} is larger than the gateway takes ({max_bytes} bytes): nothing published", 2)
    try:
        return parse_touchpoint(orjson.loads(data), recorded_at=datetime.now(UTC))
    except orjson.JSONDecodeError as exc:
        raise Refusal(f"{source} is not valid JSON ({exc}): nothing published", 2) from None
    except InvalidEvent as exc:
        raise Refusal(f"{source} is not a valid event, nothing published: {printable(exc)}", 2) from None


@contextlib.asynccontextmanager
async def _replay_lock(conn: Any, letter_id: int):
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_REPLAY_LOCKS + letter_id,))
    if not (await cur.fetchone())["got"]:
        started = await _last(conn, letter_id, "replaying")
        raise Refusal(f"dead letter {letter_id} is being replayed right now"
                      f"{f' (started {started})' if started else ''}; nothing published")
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_REPLAY_LOCKS + letter_id,))


async def _note(conn: Any, letter_id: int, action: str, by: str, **detail: Any) -> None:
    from psycopg.types.json import Jsonb

    await conn.execute("INSERT INTO dead_letter_history (dead_letter_id, action, done_by, detail) "
                       "VALUES (%s, %s, %s, %s)", (letter_id, action, by, Jsonb(detail)))


async def replay_one(conn: Any, publisher: Publisher, letter_id: int, fix: tuple[str, bytes] | None,
                     by: str) -> str:
    """Publish dead letter ``letter_id`` (or its ``fix``: name and bytes) once; what was done."""
    from aiokafka.errors import KafkaError

    from events import dump_touchpoint

    async with _replay_lock(conn, letter_id):
        d = await _letter(conn, letter_id)
        if d["status"] == "replayed":
            raise Refusal(f"dead letter {letter_id} was already replayed "
                          f"{await _last(conn, letter_id, 'replayed')}; nothing published")
        event, source = _to_publish(d, fix, publisher.settings.max_body_bytes)
        await publisher.ready()
        async with conn.transaction():
            cur = await conn.execute("UPDATE dead_letters SET status = 'replaying', replay_event = %s "
                                     "WHERE id = %s AND status = %s", (dump_touchpoint(event), letter_id,
                                                                      d["status"]))
            if cur.rowcount != 1:
                raise Refusal(f"dead letter {letter_id} changed meanwhile; nothing published")
            await _note(conn, letter_id, "replaying", by, event_id=event.event_id, source=source)
        try:
            ack = await publisher.send(event)
        except (KafkaError, TimeoutError) as exc:
            raise Refusal(f"dead letter {letter_id}: the broker did not acknowledge event {event.event_id} "
                          f"({exc!r}); it stays replaying: replay it again to send the same event") from None
        async with conn.transaction():
            await conn.execute("UPDATE dead_letters SET status = 'replayed' WHERE id = %s", (letter_id,))
            await _note(conn, letter_id, "replayed", by, event_id=event.event_id,
                        published=_position(ack.topic, ack.partition, ack.offset))
    return (f"dead letter {letter_id}: replayed as event {event.event_id} "
            f"({_position(ack.topic, ack.partition, ack.offset)})")


def _to_publish(d: dict[str, Any], fix: tuple[str, bytes] | None, max_bytes: int) -> tuple[Any, str]:
    """The event a replay of dead letter ``d`` publishes, and where it comes from: the event an
    interrupted replay kept, else the fix, else the original; validated as the gateway does."""
    from events import parse_touchpoint

    if d["status"] == "replaying":
        event = parse_touchpoint(bytes(d["replay_event"]))
        if fix:
            print(f"dead letter {d['id']}: finishing an interrupted replay with the event it kept "
                  f"(event {event.event_id}); {fix[0]} is not used", file=sys.stderr)
        return event, "the event of an interrupted replay"
    if fix:
        return _accepted(fix[1], fix[0], max_bytes), f"--fix {fix[0]}"
    original = _accepted(bytes(d["original"]), f"the original of dead letter {d['id']}", max_bytes)
    return original, "the original"


def _replay_request(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of `replay`, checked before anything is done: the fix read, who replays."""
    if args.fix and len(args.ids) > 1:
        raise Refusal("--fix repairs one dead letter: give one ID with it", 2)
    by = args.by if args.by is not None else _os_user()
    if not by.strip():
        raise Refusal("--by: say who replays", 2)
    return argparse.Namespace(ids=args.ids, fix=(args.fix, _read(args.fix)) if args.fix else None, by=by)


async def _replay(conn: Any, request: argparse.Namespace, settings: Any) -> int:
    publisher, status = Publisher(settings), 0
    try:
        for letter_id in request.ids:
            try:
                print(await replay_one(conn, publisher, letter_id, request.fix, request.by))
            except Refusal as exc:
                print(f"touchstream dlq replay: {exc}", file=sys.stderr)
                status = max(status, exc.status)
    finally:
        await publisher.close()
    return status


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this process's user
        raise Refusal("no user name to keep in the history: say who replays with --by NAME", 2) from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Refusal(f"--fix {path}: {exc.strerror}", 2) from None


# -- the command -----------------------------------------------------------------------------------

def _run(command: Any, checked: Any = lambda args: args) -> Any:
    """The command, on its ``checked`` arguments, the configured servers (or those of the
    platform ``make run`` runs) and a connection to the database, made ready by the schema
    migration; its refusals on stderr; its exit status."""
    def run(args: argparse.Namespace) -> None:
        import psycopg
        from psycopg.rows import dict_row

        from services import store
        from services.config import get_settings
        from services.infra import attach

        async def go(settings: Any) -> int:
            async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True,
                                                             row_factory=dict_row) as conn:
                return await command(conn, request, settings)

        try:
            request = checked(args)
            settings = attach(get_settings())
            store.migrate(settings.database_url)
            status = asyncio.run(go(settings))
        except Refusal as exc:
            print(f"touchstream dlq {args.dlq_command}: {exc}", file=sys.stderr)
            status = exc.status
        except (LookupError, psycopg.Error) as exc:
            print(f"touchstream dlq {args.dlq_command}: {exc}", file=sys.stderr)
            status = 1
        sys.exit(status)
    return run


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1: {text!r}")
    return int(text)


def add_parser(sub: Any) -> None:
    """Add `dlq list|show|replay` to the `touchstream` command."""
    dlq = sub.add_parser("dlq", help="dead letters: list them, show one, replay repaired ones")
    commands = dlq.add_subparsers(dest="dlq_command", required=True)
    p = commands.add_parser("list", help="one line per dead letter, newest first")
    p.add_argument("--reason", metavar="TEXT", help="only those whose error holds TEXT (any case)")
    p.add_argument("--stage", help="only those of this stage: identity, projections or archive")
    p.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N (default 50)")
    p.set_defaults(func=_run(_list))
    p = commands.add_parser("show", help="everything about one dead letter, with its history")
    p.add_argument("id", type=int, metavar="ID")
    p.set_defaults(func=_run(_show))
    p = commands.add_parser("replay", help="publish dead letters to touchpoints.raw again, once each")
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--fix", metavar="FILE", help="a JSON file with the repaired event, published "
                                                 "instead of the original (one ID only)")
    p.add_argument("--by", metavar="NAME", help="who replays, kept in the history (default: the OS user)")
    p.set_defaults(func=_run(_replay, _replay_request))
