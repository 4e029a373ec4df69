"""`touchstream models`: fit the purchase and spend models on a transactions file, or score with them.

The file is CSV with a header naming the columns ``customer_id,date,amount`` (others are ignored):
ids are kept as written (leading zeros too), dates are ISO (``1997-01-31``) or ``19970131``,
amounts are decimal numbers >= 0. Bad rows are reported with their line numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
import time
from contextlib import nullcontext
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.value.models import BgNbd, Cohort, GammaGamma, Transaction

COLUMNS = ("customer_id", "date", "amount")
SCORE_COLUMNS = ("customer_id", "x", "t_x", "T", "m_x", "p_alive", "expected_purchases",
                 "expected_order_value", "expected_value")
MAX_REPORTED = 20  # bad rows listed in one error
_COMPACT_DATE = re.compile(r"\d{8}")


class TransactionsError(ValueError):
    """The transactions file cannot be read; the message names the lines."""


def parse_date(text: str) -> date:
    """An ISO date (YYYY-MM-DD) or the compact YYYYMMDD."""
    if _COMPACT_DATE.fullmatch(text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if len(text) != 10:  # fromisoformat also takes week dates and other forms
        raise ValueError(f"not a date (YYYY-MM-DD or YYYYMMDD): {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD or YYYYMMDD): {text!r}") from None


def read_transactions(path: str | Path) -> list[Transaction]:
    """Every row of the file, or a TransactionsError listing the bad ones."""
    out: list[Transaction] = []
    errors: list[str] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                found = ",".join(header) or "nothing"
                raise TransactionsError(f"{path} line 1: the header needs the columns {','.join(COLUMNS)}; "
                                        f"missing {', '.join(missing)} (found {found})")
            at = [header.index(c) for c in COLUMNS]
            for row in reader:
                if any(cell.strip() for cell in row):
                    try:
                        out.append(_transaction(row, at))
                    except ValueError as e:
                        errors.append(f"line {reader.line_num}: {e}")
        except UnicodeDecodeError as e:
            raise TransactionsError(f"{path}: not UTF-8 text ({e.reason})") from None
        except csv.Error as e:
            raise TransactionsError(f"{path} line {reader.line_num}: not CSV ({e})") from None
    if errors:
        more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        listed = "\n".join(errors[:MAX_REPORTED])
        raise TransactionsError(f"{path}: {len(errors)} bad row(s)\n{listed}{more}")
    return out


def _transaction(row: list[str], at: list[int]) -> Transaction:
    from projections.value.models import Transaction

    if len(row) <= max(at):
        raise ValueError(f"{len(row)} field(s), the header has more")
    customer_id, day, amount = (row[i].strip() for i in at)
    if not customer_id:
        raise ValueError("empty customer_id")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"amount is not a decimal number: {amount!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount must be a finite number >= 0: {amount!r}")
    return Transaction(customer_id, parse_date(day), value)


def _cohort(args: argparse.Namespace) -> Cohort:
    from projections.value.models import summarise

    source = args.transactions or "the order ledger"
    transactions = (read_transactions(args.transactions) if args.transactions
                    else asyncio.run(_ledger(database_url())))
    cohort = summarise(transactions, args.calibration_end)
    if not len(cohort):
        raise TransactionsError(f"{source}: no purchase on or before {args.calibration_end}")
    return cohort


def database_url() -> str:
    """The configured database, or the embedded one ``make run`` is running under STATE_DIR."""
    from services.config import get_settings

    s = get_settings()
    if s.database_url:
        return s.database_url
    pgdata = Path(s.state_dir, "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        raise TransactionsError(f"no database: set DATABASE_URL, or start `make run` (its embedded "
                                f"PostgreSQL lives in {pgdata})")
    return f"postgresql://postgres:@/postgres?host={pgdata}"


async def _ledger(url: str) -> list[Transaction]:
    import psycopg

    from projections.value import store
    from services.config import get_settings

    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await store.ledger_transactions(conn, get_settings().value_rates)


async def _store(url: str, cohort: Cohort, models: tuple[BgNbd, GammaGamma], source: str,
                 activate: bool) -> int:
    import psycopg

    from projections.value import store

    data = {"source": source, "customers": len(cohort), "repeat_customers": int((cohort.x > 0).sum())}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await store.save(conn, cohort.calibration_end, *models, data, activate=activate)


def _fit_both(cohort: Cohort) -> tuple[BgNbd, GammaGamma]:
    from projections.value.models import fit_bgnbd, fit_gamma_gamma

    return fit_bgnbd(cohort.x, cohort.t_x, cohort.T), fit_gamma_gamma(cohort.x, cohort.m_x)


def _report(cohort: Cohort, models: tuple[BgNbd, GammaGamma], seconds: float, as_json: bool) -> str:
    if as_json:
        return json.dumps({"calibration_end": cohort.calibration_end.isoformat(), "customers": len(cohort),
                           "repeat_customers": int((cohort.x > 0).sum()), "fit_seconds": round(seconds, 4),
                           "models": [m.to_dict() for m in models]}, indent=2)
    lines = [f"{len(cohort)} customers, {int((cohort.x > 0).sum())} with a repeat purchase, "
             f"calibration end {cohort.calibration_end}, time in weeks"]
    for m in models:
        assert m.fit is not None
        lines.append(f"\n{m.MODEL}: log-likelihood {m.fit.log_likelihood:.2f} over {m.fit.customers} "
                     f"customers, {m.fit.iterations} iterations, {m.fit.fit_seconds:.3f} s")
        lines += [f"  {name:<6} {value:>12.4f}  (s.e. {se:.4f})"
                  for name, value, se in zip(m.PARAMS, m.params, m.fit.std_errors, strict=True)]
    lines.append(f"\ndone in {seconds:.2f} s, reading the file included")
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    cohort = _cohort(args)
    models = _fit_both(cohort)
    print(_report(cohort, models, time.perf_counter() - started, args.json))
    if args.store or not args.transactions:  # a fit on the ledger is kept unless --dry-run
        if args.dry_run:
            return
        version = asyncio.run(_store(database_url(), cohort, models,
                                     args.transactions or "ledger", not args.no_activate))
        state = "kept, not active" if args.no_activate else "active"
        print(f"model set version {version}: {state}", file=sys.stderr if args.json else sys.stdout)


def _list(args: argparse.Namespace) -> None:
    import psycopg

    from projections.value import store

    async def sets() -> list:
        async with await psycopg.AsyncConnection.connect(database_url()) as conn:
            return await store.history(conn, args.limit)

    for m in asyncio.run(sets()):
        p, s = m.purchases, m.spend
        print(f"{m.version:>5} {'active' if m.active else '      '} {m.fitted_at:%Y-%m-%d %H:%M} "
              f"calibration end {m.calibration_end}  {m.data.get('source')}: "
              f"{m.data.get('customers')} customers  r {p.r:.4g} alpha {p.alpha:.4g} a {p.a:.4g} "
              f"b {p.b:.4g}  p {s.p:.4g} q {s.q:.4g} gamma {s.gamma:.4g}")


def _activate(args: argparse.Namespace) -> None:
    import psycopg

    from projections.value import store

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
            await store.activate(conn, args.version)

    try:
        asyncio.run(go())
    except LookupError as e:
        raise TransactionsError(str(e)) from None
    print(f"model set version {args.version}: active")


def _score(args: argparse.Namespace) -> None:
    from projections.value.models import expected_value

    started = time.perf_counter()
    c = _cohort(args)
    purchases, spend = models = _fit_both(c)
    alive = purchases.p_alive(c.x, c.t_x, c.T)
    expected = purchases.expected_purchases(args.horizon_weeks, c.x, c.t_x, c.T)
    order_value = spend.expected_order_value(c.x, c.m_x)
    value = expected_value(purchases, spend, c.x, c.t_x, c.T, c.m_x, args.horizon_weeks, args.discount_rate)
    columns = (c.x, c.t_x, c.T, c.m_x, alive, expected, order_value, value)
    with open(args.output, "w", newline="") if args.output else nullcontext(sys.stdout) as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(SCORE_COLUMNS)
        for customer_id, x, *figures in zip(c.customer_ids, *columns, strict=True):
            w.writerow([customer_id, int(x), *(f"{v:.6g}" for v in figures)])
    print(_report(c, models, time.perf_counter() - started, False), file=sys.stderr)


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> None:
        import psycopg

        from projections.value.models import FitError

        try:
            func(args)
        except (FitError, TransactionsError, OSError, psycopg.Error) as e:
            sys.exit(f"touchstream models: {e}")
    return run


def _day(text: str) -> date:
    try:
        return parse_date(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _number(low: float, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value >= low and value < float("inf")):
            raise argparse.ArgumentTypeError(f"{what}: {text!r}")
        return value
    return parse


def add_parser(sub: Any) -> None:
    """Add `models fit|score|list|activate` to the `touchstream` command."""
    models = sub.add_parser("models", help="fit the purchase (BG/NBD) and spend (Gamma-Gamma) models")
    commands = models.add_subparsers(dest="models_command", required=True)
    for name, func, text in (("fit", _fit, "fit on the order ledger (kept and made active) or on a "
                                           "transactions CSV, and print the parameters"),
                             ("score", _score, "fit on a CSV, then write one row per customer (CSV)")):
        p = commands.add_parser(name, help=text)
        ledger = " (default: the order ledger)" if name == "fit" else ""
        p.add_argument("--transactions", required=name == "score", metavar="FILE.csv",
                       help=f"customer_id,date,amount{ledger}")
        p.add_argument("--calibration-end", required=name == "score", type=_day, metavar="DATE",
                       default=datetime.now(UTC).date(),
                       help="last day of the calibration period, inclusive"
                            + (" (default: today)" if name == "fit" else ""))
        if name == "fit":
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
            p.add_argument("--store", action="store_true",
                           help="keep a fit on a CSV in the database (and make it active)")
            p.add_argument("--no-activate", action="store_true", help="keep the set, do not make it active")
            p.add_argument("--dry-run", action="store_true", help="fit on the ledger without keeping it")
        else:
            p.add_argument("--horizon-weeks", required=True, type=_number(0, "a number of weeks >= 0"),
                           metavar="N", help="weeks ahead, for expected_purchases and expected_value")
            p.add_argument("--discount-rate", type=_number(0, "an annual rate >= 0"), default=0.0,
                           metavar="R", help="annual rate for the expected value (default 0: undiscounted)")
            p.add_argument("--output", metavar="FILE", help="default: standard output")
        p.set_defaults(func=_run(func))
    p = commands.add_parser("list", help="the stored model sets, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_run(_list))
    p = commands.add_parser("activate", help="make a stored model set the active one")
    p.add_argument("version", type=int)
    p.set_defaults(func=_run(_activate))
