"""Churn alerts on the live stream: complaint -> watcher latency under load, and fan-out.

The API (``api_workers`` processes, two by default) and one worker per stage, as `make run` starts
them; our open-loop load generator offers 2,000 single POSTs/s of sample events in its own
process, as in the freshness run, while this process POSTs complaints of its own (critical, a new
customer each, occurred now, so that rule ``complaint`` opens an alert at once) and follows
``GET /v1/alerts/stream?rule=complaint`` with hand-written HTTP/1.1 clients on one event loop.

Latency: one watcher; complaints at 5/s; per complaint, from just before its POST until the
``opened`` event whose evidence holds its event id arrives. Fan-out: 200 watchers connected at
once (the kernel spreads them over the API processes; how is reported), complaints at 20/s with
the same background load, and before that without it: on two cores the background load alone
nearly fills them, so only the run without it says what the fan-out itself costs. Per alert and watcher, the
delivery latency from the POST and from the event's ``recorded_at`` (PostgreSQL's ``now()`` in
the writing transaction: its start, so the figure includes the commit); every missing delivery
is counted; the CPU of the API processes, of the other platform processes, of this client and of
the whole machine over the window. Each arrival is stamped as it is read and parsed after the
window, so that the client does little more than read its sockets while it runs.

Alone: ``python -m bench.alerts [--quick]`` (an embedded broker and PostgreSQL of its own, under
``STATE_DIR/bench-alerts``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg
import uvloop

from bench.env import BenchEnv, cpu_seconds
from bench.ingest import drain, write_events
from bench.loadgen import measure, ms
from services.alerts_cli import parse
from services.config import Settings
from services.infra.broker import free_port

LOAD_RPS = 2000  # background single POSTs/s, as in the freshness run
LATENCY_PER_S = 5  # complaints/s with one watcher
WATCHERS = 200
FANOUT_PER_S = 20  # complaints/s with every watcher connected
GRACE_S = 15.0  # after the last complaint, how long the watchers may take to get it
TARGET_P99_MS = 500.0
STREAM = "/v1/alerts/stream?rule=complaint"


class Watcher(asyncio.Protocol):
    """One client of the alert stream: it stamps each event's arrival and keeps its bytes."""

    transport: asyncio.Transport

    def __init__(self, host: str, mark: bytes) -> None:
        self.request = (f"GET {STREAM} HTTP/1.1\r\nHost: {host}\r\n"
                        "Accept: text/event-stream\r\n\r\n").encode()
        self.mark = mark  # in the alerts of our complaints (their complaint ids): counted as they come
        self.raw, self.body = bytearray(), bytearray()
        self.status: int | None = None
        self.chunked = False
        self.ready = asyncio.get_running_loop().create_future()
        self.events: list[tuple[float, float, bytes]] = []  # (monotonic, wall clock, event)
        self.opened = 0  # opened events of our complaints' alerts
        self.closed = False
        self.port = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        at, wall = time.monotonic(), time.time()
        self.raw += data
        if self.status is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.raw[:end]).lower()
            self.status, self.chunked = int(head[9:12]), b"transfer-encoding: chunked" in head
            del self.raw[:end + 4]
            if self.status != 200 and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"stream answered {self.status}"))
        if not self.chunked:
            self.body += self.raw
            self.raw.clear()
        while self.chunked:  # the chunks that are complete
            nl = self.raw.find(b"\r\n")
            if nl < 0:
                break
            size = int(bytes(self.raw[:nl]).split(b";")[0], 16)
            if len(self.raw) < nl + size + 4:
                break
            self.body += self.raw[nl + 2:nl + 2 + size]
            del self.raw[:nl + size + 4]
        while (end := self.body.find(b"\n\n")) >= 0:
            event = bytes(self.body[:end + 1])
            del self.body[:end + 2]
            self.events.append((at, wall, event))
            if event.startswith(b"event: opened\n") and self.mark in event:
                self.opened += 1
            elif event.startswith(b"event: ready\n") and not self.ready.done():
                self.ready.set_result(None)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"stream closed before it was ready: {exc!r}"))

    def arrivals(self) -> tuple[dict[str, tuple[float, float, float]], dict[str, int]]:
        """Event id -> (arrived, arrived by the wall clock, recorded_at) of each ``opened`` event,
        by the event ids of its evidence; and the events received, by kind (``repeated``: an
        event id in a second ``opened`` event)."""
        out: dict[str, tuple[float, float, float]] = {}
        kinds: dict[str, int] = {}
        for at, wall, raw in self.events:
            for e in parse([*raw.decode().split("\n"), ""]):
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
                if e.kind != "opened":
                    continue
                body = orjson.loads(e.data)
                recorded = datetime.fromisoformat(body["recorded_at"]).timestamp()
                for event_id in body["alert"]["evidence"]:
                    if event_id in out:
                        kinds["repeated"] = kinds.get("repeated", 0) + 1
                    out.setdefault(event_id, (at, wall, recorded))
        return out, kinds


def mark(tag: str) -> bytes:
    return f"K-{tag}-".encode()


def complaint(tag: str, i: int) -> dict[str, Any]:
    """A critical complaint of a new customer, occurred now, with its own event id."""
    return {"event_id": str(uuid.uuid4()), "type": "complaint", "schema_version": 1,
            "customer": {"customer_id": None, "email": f"alert-{tag}-{i}@bench.touchstream.test",
                         "phone": None, "external_ids": {}},
            "occurred_at": datetime.now(UTC).isoformat(), "channel": "chat", "source": "bench",
            "payload": {"complaint_id": f"{mark(tag).decode()}{i}", "category": "delivery",
                        "severity": "critical", "text": "The parcel never came."}}


async def complaints(url: str, rate: float, seconds: float, tag: str) -> list[dict[str, Any]]:
    """Complaints due at start + i / rate (open loop); per complaint its event id, when it was
    sent (just before the POST), when it was answered and the status."""
    async def post(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        event = complaint(tag, i)
        body = orjson.dumps(event)
        sent = time.monotonic()
        answer = await client.post("/v1/touchpoints", content=body,
                                   headers={"content-type": "application/json"})
        return {"event_id": event["event_id"], "sent": sent, "accepted": time.monotonic(),
                "status": answer.status_code}

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        start, tasks = time.monotonic() + 0.05, []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post(client, i)))
        return list(await asyncio.gather(*tasks))


async def watch(host: str, port: int, n: int, tag: str) -> list[Watcher]:
    """``n`` watchers connected at once; returns when each has had its ``ready`` event."""
    loop = asyncio.get_running_loop()
    made = await asyncio.gather(*(loop.create_connection(lambda: Watcher(host, mark(tag)), host, port)
                                  for _ in range(n)))
    watchers = [w for _, w in made]
    await asyncio.wait_for(asyncio.gather(*(w.ready for w in watchers)), 60)
    return watchers


async def until_delivered(watchers: list[Watcher], expected: int, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(w.opened < expected and not w.closed for w in watchers):
        await asyncio.sleep(0.05)


class Cpu:
    """CPU seconds of the platform's processes (the API with its uvicorn workers, each worker with
    the jobs it starts, the broker, PostgreSQL with its backends) and of this process."""

    def __init__(self, env: BenchEnv, procs: list) -> None:
        names = ["api", "worker_identity", "worker_projections", "worker_archive"]
        self.pids = {**dict(zip(names, (p.pid for p in procs), strict=True)), **env.server_pids()}
        self.api = psutil.Process(procs[0].pid).children(recursive=True)
        self.start = self.read()

    def read(self) -> dict[str, float]:
        out = {k: cpu_seconds(pid, children=k != "broker") for k, pid in self.pids.items()}
        each = {f"api.{i}": cpu_seconds(p.pid) for i, p in enumerate(self.api)}
        times = psutil.cpu_times()
        return {**out, **each, "client": time.process_time(), "wall": time.monotonic(),
                "machine": times.user + times.nice + times.system + times.irq + times.softirq}

    def spent(self) -> dict[str, Any]:
        now = self.read()
        seconds = now["wall"] - self.start["wall"]
        used = {k: round(now[k] - self.start[k], 2) for k in now if k != "wall"}
        each = sorted((used.pop(k) for k in list(used) if k.startswith("api.")), reverse=True)
        machine = used.pop("machine")
        return {"seconds": round(seconds, 2), "cpu_s": used,
                "machine_busy_pct": round(machine / seconds / (psutil.cpu_count() or 1) * 100, 1),
                # the machine's CPU time that none of the processes above used (the load
                # generator, anything else running: then the figures are not this code's alone)
                "machine_other_s": round(machine - sum(used.values()), 2),
                "pct_of_a_core": {k: round(v / seconds * 100, 1) for k, v in used.items()},
                "api_processes_cpu_s": [x for x in each if x > 0.05]}  # not the resource tracker


def served_by(api_pid: int, port: int, watchers: list[Watcher]) -> list[int]:
    """How many of the watchers each API process (those listening on the port) holds, by their
    connections' ports, most first."""
    ours = {w.port for w in watchers}
    counts = []
    for child in psutil.Process(api_pid).children(recursive=True):
        conns = [c for c in child.net_connections(kind="tcp") if c.laddr and c.laddr.port == port]
        if conns:
            counts.append(sum(1 for c in conns if c.raddr and c.raddr.port in ours))
    return sorted(counts, reverse=True)


def sessions(s: Settings) -> tuple[int, int]:
    """The database's sessions (the API's pools and alert followers, the workers), and those that
    read the alert log in the last two seconds: the API processes' followers of the log, which
    read it on every notification and every second (a stream reads it only when it starts)."""
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query LIKE 'SELECT seq, kind, alert, "
            "recorded_at FROM alert_log WHERE seq >%' AND state_change > now() - interval '2 s') "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchone()
    return (row[0], row[1]) if row else (0, 0)


async def phase(env: BenchEnv, procs: list, s: Settings, events: Path, skip: int, n_watchers: int,
                rate: float, seconds: float, load_rps: int, warmup: float) -> dict[str, Any]:
    """``n_watchers`` on the stream, then the background load, then complaints at ``rate``."""
    url = f"http://{s.http_host}:{s.http_port}"
    before, _ = sessions(s)
    tag = uuid.uuid4().hex[:8]
    connecting = time.monotonic()
    watchers = await watch(s.http_host, s.http_port, n_watchers, tag)
    connected_s = time.monotonic() - connecting
    held = served_by(procs[0].pid, s.http_port, watchers)
    load = None
    if load_rps:  # the generator needs a moment to start: complaints begin after its warm-up
        load = asyncio.create_task(asyncio.to_thread(
            measure, "post-single", url, events, rate=load_rps, seconds=seconds + 2,
            warmup=warmup, skip=skip))
        await asyncio.sleep(warmup + 1.0)
    cpu = Cpu(env, procs)
    sent = await complaints(url, rate, seconds, tag)
    accepted = [x for x in sent if x["status"] == 202]
    await until_delivered(watchers, len(accepted), GRACE_S)
    used = cpu.spent()
    during, followers = sessions(s)
    for w in watchers:
        w.transport.close()
    background = await load if load else None
    return summary(watchers, sent, accepted, used) | {
        "watchers": n_watchers, "connect_s": round(connected_s, 2), "watchers_per_api_process": held,
        "offered_per_s": rate, "seconds": seconds, "database_sessions": [before, during],
        "log_followers": followers,
        "background": _background(background, load_rps)}


def summary(watchers: list[Watcher], sent: list[dict], accepted: list[dict],
            used: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of the deliveries of our complaints' alerts, and what was missing."""
    from_post: list[float] = []
    from_recorded: list[float] = []
    kinds: dict[str, int] = {}
    missing: dict[str, int] = {}
    for w in watchers:
        got, seen = w.arrivals()
        for k, v in seen.items():
            kinds[k] = kinds.get(k, 0) + v
        for x in accepted:
            if x["event_id"] in got:
                at, wall, recorded = got[x["event_id"]]
                from_post.append(at - x["sent"])
                from_recorded.append(wall - recorded)
            else:
                missing[x["event_id"]] = missing.get(x["event_id"], 0) + 1
    from_post.sort()
    from_recorded.sort()
    posts = sorted(x["accepted"] - x["sent"] for x in sent)
    return {"complaints": len(sent), "accepted": len(accepted),
            "post_errors": len(sent) - len(accepted),
            "expected": len(accepted) * len(watchers), "delivered": len(from_post),
            "missing": sum(missing.values()), "never_seen_by_any": sum(
                1 for n in missing.values() if n == len(watchers)),
            "missing_ids": list(missing)[:5], "events_by_kind": kinds,
            "p50_ms": ms(from_post, 0.5), "p99_ms": ms(from_post, 0.99), "max_ms": ms(from_post, 1),
            "from_recorded_p50_ms": ms(from_recorded, 0.5),
            "from_recorded_p99_ms": ms(from_recorded, 0.99),
            "from_recorded_max_ms": ms(from_recorded, 1),
            "post_p50_ms": ms(posts, 0.5), "post_p99_ms": ms(posts, 0.99), "cpu": used,
            # with the background load, its POSTs are in the API's time too
            "api_cpu_us_per_delivery": round(used["cpu_s"]["api"] / len(from_post) * 1e6, 1)
            if from_post else None}


def _background(out: dict[str, Any] | None, rate: int) -> dict[str, Any] | None:
    if out is None:
        return None
    return {"offered_rps": rate, "achieved_rps": out["achieved_rps"], "p50_ms": out["p50_ms"],
            "p99_ms": out["p99_ms"], "errors": out["errors"], "generator": out["generator"]}


def run(env: BenchEnv, quick: bool, watchers: int = WATCHERS, load_rps: int = LOAD_RPS,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """The fan-out alone (what it costs the API with nothing else competing for the cores), then
    the latency and the fan-out under the background load, on one set of servers as `make run`
    starts them."""
    latency_s, fanout_s, alone_s, warmup = (10, 12, 10, 2.0) if quick else (60, 30, 30, 5.0)
    s = env.isolated(http_port=free_port())
    procs = env.serve(s)
    out: dict[str, Any] = {"api_workers": s.api_workers}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            first = int(load_rps * (latency_s + 2 + warmup)) + 1
            need = max(1, first + int(load_rps * (fanout_s + 2 + warmup)) + 1)
            events = write_events(Path(tmp, "events.jsonl"), need, customers=20_000, seed=31)
            if load_rps:
                log(f"alerts: {watchers} watchers, {FANOUT_PER_S} complaints/s for {alone_s} s")
                out["fanout_alone"] = uvloop.run(phase(env, procs, s, events, 0, watchers,
                                                       FANOUT_PER_S, alone_s, 0, warmup))
            log(f"alerts: one watcher, {LATENCY_PER_S} complaints/s for {latency_s} s, "
                f"{load_rps:,} POSTs/s beside them")
            out["latency"] = uvloop.run(phase(env, procs, s, events, 0, 1, LATENCY_PER_S,
                                              latency_s, load_rps, warmup))
            out["latency"]["target_p99_ms"] = TARGET_P99_MS
            drain(s)
            log(f"alerts: {watchers} watchers, {FANOUT_PER_S} complaints/s for {fanout_s} s, "
                f"{load_rps:,} POSTs/s beside them")
            out["fanout"] = uvloop.run(phase(env, procs, s, events, first, watchers, FANOUT_PER_S,
                                             fanout_s, load_rps, warmup))
    finally:
        for p in procs:
            env.stop_child(p)
    return out


def main(argv: list[str] | None = None) -> None:
    from bench.report import alert_rows
    from bench.run import log
    from services.config import get_settings

    p = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter windows (about a minute)")
    p.add_argument("--watchers", type=int, default=WATCHERS, help="fan-out watchers")
    p.add_argument("--load", type=int, default=LOAD_RPS, help="background POSTs/s (0: none)")
    p.add_argument("--out", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    # a state directory of its own: a full run may be using the bench's at the same time
    state_dir = Path(get_settings().state_dir) / "bench-alerts"
    shutil.rmtree(state_dir, ignore_errors=True)
    env = BenchEnv.start(Settings(state_dir=state_dir))
    try:
        log(f"alerts: complaint -> stream latency, then {args.watchers} watchers, "
            f"{args.load:,} background POSTs/s")
        out = run(env, args.quick, args.watchers, args.load, log)
    finally:
        env.stop()
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    if args.out:
        Path(args.out).write_bytes(text)
    print(text.decode())
    print("| figure | value | target | |\n|---|---|---|---|")
    for row in alert_rows(out):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
