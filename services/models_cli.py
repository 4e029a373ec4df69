"""`touchstream models`: fit the purchase and spend models on a transactions file, or score with them.

The file is CSV with a header naming the columns ``customer_id,date,amount`` (others are ignored):
ids are kept as written (leading zeros too), dates are ISO (``1997-01-31``) or ``19970131``,
amounts are decimal numbers >= 0. Bad rows are reported with their line numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from contextlib import nullcontext
from datetime import date
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

    cohort = summarise(read_transactions(args.transactions), args.calibration_end)
    if not len(cohort):
        raise TransactionsError(f"{args.transactions}: no purchase on or before {args.calibration_end}")
    return cohort


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
        from projections.value.models import FitError

        try:
            func(args)
        except (FitError, TransactionsError, OSError) as e:
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
    """Add `models fit` and `models score` to the `touchstream` command."""
    models = sub.add_parser("models", help="fit the purchase (BG/NBD) and spend (Gamma-Gamma) models")
    commands = models.add_subparsers(dest="models_command", required=True)
    for name, func, text in (("fit", _fit, "fit on a transactions CSV and print the parameters"),
                             ("score", _score, "fit, then write one row per customer (CSV)")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--transactions", required=True, metavar="FILE.csv", help="customer_id,date,amount")
        p.add_argument("--calibration-end", required=True, type=_day, metavar="DATE",
                       help="last day of the calibration period (inclusive)")
        if name == "fit":
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        else:
            p.add_argument("--horizon-weeks", required=True, type=_number(0, "a number of weeks >= 0"),
                           metavar="N", help="weeks ahead, for expected_purchases and expected_value")
            p.add_argument("--discount-rate", type=_number(0, "an annual rate >= 0"), default=0.0,
                           metavar="R", help="annual rate for the expected value (default 0: undiscounted)")
            p.add_argument("--output", metavar="FILE", help="default: standard output")
        p.set_defaults(func=_run(func))
