"""Our open-loop HTTP load generator, a process of its own: the JSON result goes to stdout.

    python -m bench.loadgen post-single URL events.jsonl --rate 2000 --seconds 30
    python -m bench.loadgen post-batch URL events.jsonl --batch 500 --seconds 10
    python -m bench.loadgen get URL paths.txt --rate 500 --seconds 20
    python -m bench.loadgen fresh URL events.jsonl --rate 2000 --seconds 60 --poll-every 100

Open loop: request i is due at start + i/rate whatever the answers. Its latency runs from that due
time when it went out late, so a stalled server shows here as queueing (no coordinated omission);
from its send when it went out early (a timer tick sends what falls due before the next tick).
Requests go over a pool of keep-alive HTTP/1.1 connections written by hand; a due request waits
for a free one. `post-batch` is closed loop instead: each connection sends its next batch once the
last is answered. `fresh` is `post-single` that also polls, after the 202 of every Nth event, the
profile of that event's customer (by email) until it shows the event id.
`generator.ceiling_rps` is requests per second of our own CPU time: what we could offer at most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlsplit

import orjson
import uvloop

from bench import importable


class Connection(asyncio.Protocol):
    """One keep-alive connection; answers need Content-Length (uvicorn always sends it)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.on_answer: Callable[[int, bytes], None] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes, on_answer: Callable[[int, bytes], None]) -> None:
        assert self.transport is not None, "send on a closed connection"
        self.on_answer = on_answer
        self.transport.write(request)

    async def ask(self, request: bytes) -> bytes:
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.send(request, lambda _status, body: answer.set_result(body))
        return await answer

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        total = end + 4 + (int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0)
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4:total])
        del self.buf[:total]
        callback, self.on_answer = self.on_answer, None
        if callback:
            callback(int(head[9:12]), body)

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self.on_answer:
            self.on_answer(0, b"")  # status 0: the connection broke


class Load:
    """Due requests, a pool of connections, and what came back."""

    def __init__(self, url: str, lines: list[bytes], request: Callable[[bytes], bytes]):
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.lines, self.request = lines, request
        self.due: deque[tuple[int, float]] = deque()
        self.idle: deque[Connection] = deque()
        self.latencies: list[float] = []
        self.lags: list[float] = []  # sent - due: our timer, plus waiting for a free connection
        self.statuses: Counter[int] = Counter()
        self.on_ok: Callable[[int, bytes, float], None] | None = None
        self.pool = self.sampled = self.polls = 0
        self.watchers: dict[asyncio.Future, str] = {}  # polling tasks -> their event ids
        self.record_from = self.last_answer = 0.0

    async def connect(self, n: int) -> list[Connection]:
        loop = asyncio.get_running_loop()
        made = [await loop.create_connection(Connection, self.host, self.port) for _ in range(n)]
        return [c for _, c in made]

    def dispatch(self) -> None:
        while self.due and self.idle:
            conn = self.idle.popleft()
            if conn.transport is None:  # closed by the server while idle
                asyncio.ensure_future(self.replace())
                continue
            i, due = self.due.popleft()
            sent, counted = time.monotonic(), due >= self.record_from
            if counted:
                self.lags.append(sent - due)
            # from the due time when sent late (queueing counts), from the send when sent early
            since = min(due, sent)
            conn.send(self.request(self.lines[i % len(self.lines)]),
                      partial(self.answered, conn, i, since, counted))

    def answered(self, conn: Connection, i: int, since: float, counted: bool, status: int,
                 body: bytes) -> None:
        now = time.monotonic()
        if counted:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.latencies.append(now - since)
                self.last_answer = now
        if status and 200 <= status < 300 and self.on_ok:
            self.on_ok(i, body, now)
        if status:
            self.idle.append(conn)
            self.dispatch()
        else:
            asyncio.ensure_future(self.replace())

    async def replace(self) -> None:
        self.idle.extend(await self.connect(1))
        self.dispatch()

    async def offer(self, rate: float, seconds: float, warmup: float, grace: float = 10.0) -> float:
        start = time.monotonic() + 0.05
        self.record_from = start + warmup
        total, i = int(rate * (seconds + warmup)), 0
        while i < total:
            # send what falls due before the next tick now: uvloop's timers count whole ms
            upto = min(total, max(0, int((time.monotonic() + 0.001 - start) * rate) + 1))
            while i < upto:
                self.due.append((i, start + i / rate))
                i += 1
            self.dispatch()
            await asyncio.sleep(0.001)
        deadline = time.monotonic() + grace
        while self.due and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.statuses[-1] += len(self.due)  # -1: never sent within the grace period
        self.due.clear()
        while len(self.idle) < self.pool and time.monotonic() < deadline + 30:  # answers in flight
            await asyncio.sleep(0.01)
        return start + warmup


def ms(ordered: list[float], q: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else None


def summary(latencies: list[float], statuses: Counter[int], seconds: float) -> dict:
    ok = sorted(latencies)
    return {"count": sum(statuses.values()), "ok": len(ok),
            "errors": {str(s): n for s, n in statuses.items() if n and not 200 <= s < 300},
            "p50_ms": ms(ok, 0.5), "p90_ms": ms(ok, 0.9), "p99_ms": ms(ok, 0.99), "max_ms": ms(ok, 1),
            "achieved_rps": round(len(ok) / seconds, 1) if seconds > 0 else 0.0}


def post(path: str) -> Callable[[bytes], bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: "
    return lambda body: b"%s%d\r\n\r\n%s" % (head.encode(), len(body), body)


def get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path


async def main(args: argparse.Namespace) -> dict:
    lines = [line for line in Path(args.file).read_bytes().split(b"\n") if line]
    lines = lines[args.skip % len(lines):] + lines[:args.skip % len(lines)]
    if args.mode == "post-batch":
        lines = [b'{"events":[%s]}' % b",".join(lines[i:i + args.batch])
                 for i in range(0, len(lines) - args.batch + 1, args.batch)]
    request = get if args.mode == "get" else post("/v1/touchpoints/batch" if args.mode == "post-batch"
                                                  else "/v1/touchpoints")
    load = Load(args.url, lines, request)
    load.pool = args.connections
    load.idle.extend(await load.connect(args.connections))
    cpu0 = time.process_time()
    fresh: list[float] = []
    if args.mode == "fresh":
        load.on_ok = await poller(load, args, fresh)
    if args.mode == "post-batch":
        started = await closed_loop(load, args.seconds, args.warmup)
    else:
        started = await load.offer(args.rate, args.seconds, args.warmup)
    elapsed = (load.last_answer or time.monotonic()) - started
    out = {"mode": args.mode, "offered_rps": args.rate if args.mode != "post-batch" else None,
           "seconds": round(elapsed, 2), "connections": args.connections,
           **summary(load.latencies, load.statuses, elapsed)}
    if args.mode == "post-batch":
        out["events_per_s"] = round(out["achieved_rps"] * args.batch, 1)
    if args.mode == "fresh":
        if load.watchers:  # all sampled by now: every request has been answered or given up
            await asyncio.wait(list(load.watchers), timeout=30)
        out["freshness"] = {**summary(fresh, Counter({200: len(fresh)}), elapsed),
                            "sampled": load.sampled, "never_seen": load.sampled - len(fresh),
                            "never_seen_ids": list(load.watchers.values())[:5],
                            "polls": load.polls, "polls_per_s": round(load.polls / elapsed, 1)}
    cpu, lags = time.process_time() - cpu0, sorted(load.lags)
    out["generator"] = {"cpu_s": round(cpu, 2), "busy": round(cpu / max(elapsed, 1e-9), 2),
                        "ceiling_rps": round(out["count"] / cpu) if cpu else None,
                        "send_lag_p50_ms": ms(lags, 0.5), "send_lag_p99_ms": ms(lags, 0.99)}
    return out


async def closed_loop(load: Load, seconds: float, warmup: float) -> float:
    """Each idle connection gets the next request as soon as it is free, for `seconds`."""
    start = time.monotonic()
    load.record_from = start + warmup
    end, i = start + warmup + seconds, 0
    while time.monotonic() < end:
        while len(load.due) < len(load.idle):
            load.due.append((i, time.monotonic()))
            i += 1
        load.dispatch()
        await asyncio.sleep(0.001)
    while len(load.idle) < load.pool and time.monotonic() < end + 30:
        await asyncio.sleep(0.01)
    return start + warmup


async def poller(load: Load, args: argparse.Namespace, fresh: list[float]):
    """After the 202 of every Nth event, poll its customer's profile every poll_ms until it shows."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in await load.connect(args.poll_connections):
        pool.put_nowait(conn)

    async def watch(event: dict, accepted: float) -> None:
        path = b"/v1/customers?email=" + quote(event["customer"]["email"]).encode()
        while True:
            conn = await pool.get()
            if conn.transport is None:  # the server closes connections idle for 5 s
                conn = (await load.connect(1))[0]
            body = await conn.ask(get(path))
            pool.put_nowait(conn)
            load.polls += 1
            if event["event_id"].encode() in body:
                fresh.append(time.monotonic() - accepted)
                return
            await asyncio.sleep(args.poll_ms / 1000)

    def on_ok(i: int, _body: bytes, now: float) -> None:
        if i % args.poll_every == 0 and now >= load.record_from:
            load.sampled += 1
            event = orjson.loads(load.lines[i % len(load.lines)])
            task = asyncio.ensure_future(watch(event, now))
            load.watchers[task] = event["event_id"]
            task.add_done_callback(lambda t: t.cancelled() or t.exception() or load.watchers.pop(t))
    return on_ok


def measure(mode: str, url: str, path: Path, **options: float) -> dict:
    """Run the generator as its own process (it must not share the server's loop); its result."""
    flags = [f for k, v in options.items() for f in (f"--{k.replace('_', '-')}", str(v))]
    done = subprocess.run([sys.executable, "-m", "bench.loadgen", mode, url, str(path), *flags],
                          capture_output=True, text=True, timeout=3600, env=importable(dict(os.environ)))
    if done.returncode:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    return orjson.loads(done.stdout)


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["post-single", "post-batch", "get", "fresh"])
    p.add_argument("url")
    p.add_argument("file", help="JSON events one per line (post-*, fresh) or paths (get)")
    p.add_argument("--rate", type=float, default=1000, help="requests/s offered (open loop)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=0, help="seconds sent first and not recorded")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--skip", type=int, default=0, help="start at this line of the file")
    p.add_argument("--poll-every", type=int, default=100)
    p.add_argument("--poll-ms", type=float, default=10)
    p.add_argument("--poll-connections", type=int, default=8)
    args = p.parse_args(argv)
    result = uvloop.run(main(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    cli()
