"""The purchase (BG/NBD) and spend (Gamma-Gamma) models: the published CDNOW fits, recovery of
known parameters, the likelihoods' gradients, the customer-level figures, the CSV door."""

from __future__ import annotations

import csv
import json
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from scipy.special import hyp2f1

from projections.value import models
from projections.value.models import (
    BgNbd,
    Counts,
    FitError,
    GammaGamma,
    Transaction,
    bgnbd_loglik,
    discounted_expected_purchases,
    expected_value,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_loglik,
    summarise,
)
from services import cli
from services.models_cli import TransactionsError, read_transactions

CDNOW = Path(__file__).parents[1] / "data" / "cdnow_sample.csv"
CDNOW_END = date(1997, 9, 30)
PUBLISHED = BgNbd(0.243, 4.414, 0.793, 2.426)  # FHL 2005a; log-likelihood -9,582.4


def simulate(n: int, r: float, alpha: float, a: float, b: float, T: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of customers drawn from BG/NBD: Poisson purchases at a Gamma(r, alpha) rate,
    dropping out after each repeat purchase with a Beta(a, b) probability."""
    rate, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t = np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        i = np.flatnonzero(active)
        following = t[i] + rng.exponential(1 / rate[i])
        inside = following <= T[i]
        active[i[~inside]] = False
        i, following = i[inside], following[inside]
        t[i] = following
        x[i] += 1
        active[i[rng.random(i.size) < drop[i]]] = False
    return x, t, T


@pytest.fixture(scope="module")
def cdnow() -> models.Cohort:
    return summarise(read_transactions(CDNOW), CDNOW_END)


@pytest.fixture(scope="module")
def cdnow_fit(cdnow: models.Cohort) -> tuple[BgNbd, GammaGamma]:
    return fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T), fit_gamma_gamma(cdnow.x, cdnow.m_x)


# --- published results on real data ------------------------------------------------------------

def test_cdnow_cohort_as_in_the_papers(cdnow: models.Cohort) -> None:
    assert len(cdnow) == 2357
    assert int((cdnow.x > 0).sum()) == 946  # the repeat customers of the Gamma-Gamma fit
    assert cdnow.customer_ids[0] == "00004"  # ids stay strings
    first = cdnow.customer_ids.index("00004")  # 1997-01-01, 01-18, 08-02 in calibration; 12-12 after
    assert (cdnow.x[first], cdnow.t_x[first], cdnow.T[first]) == (2, 213 / 7, 272 / 7)
    assert cdnow.m_x[first] == pytest.approx((29.73 + 14.96) / 2)


def test_cdnow_bgnbd_reproduces_the_published_fit(cdnow_fit: tuple[BgNbd, GammaGamma]) -> None:
    bg = cdnow_fit[0]
    assert bg.fit is not None
    for got, published in zip(bg.params, PUBLISHED.params, strict=True):
        assert got == pytest.approx(published, rel=0.01)
    assert bg.fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    # four digits, as a fit with these conventions gives
    assert bg.params == pytest.approx((0.2426, 4.4136, 0.7929, 2.4259), abs=5e-5)
    assert bg.fit.log_likelihood == pytest.approx(-9582.43, abs=5e-3)
    assert bg.fit.customers == 2357
    print(f"\nCDNOW BG/NBD {bg.to_dict()}")


def test_an_optimiser_stopping_short_of_the_gradient_tolerance_is_finished_by_newton_steps(
        cdnow: models.Cohort, monkeypatch: pytest.MonkeyPatch) -> None:
    """L-BFGS-B can stop on its relative reduction of f with a gradient just above the tolerance
    (seen on the bench's ledger: largest gradient 1.1e-6): the fit finishes with Newton steps and
    lands on the same optimum, instead of failing."""
    stopped: list[float] = []
    real = models.minimize

    def early(fun, x0, **kwargs):  # the real optimiser, told to stop early
        kwargs["options"] = {**kwargs["options"], "ftol": 1e-7, "gtol": 1e-3}
        res = real(fun, x0, **kwargs)
        stopped.append(float(np.max(np.abs(fun(res.x)[1]))))
        return res
    monkeypatch.setattr(models, "minimize", early)
    bg = fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T)
    assert stopped and stopped[0] > models._GTOL  # it did stop short
    assert bg.params == pytest.approx((0.2426, 4.4136, 0.7929, 2.4259), abs=5e-5)


def test_cdnow_gamma_gamma_reproduces_the_published_fit(cdnow_fit: tuple[BgNbd, GammaGamma]) -> None:
    gg = cdnow_fit[1]
    assert gg.fit is not None
    assert gg.params == pytest.approx((6.25, 3.74, 15.44), rel=0.01)
    assert gg.params == pytest.approx((6.250, 3.744, 15.44), abs=5e-3)
    assert gg.fit.customers == 946
    print(f"\nCDNOW Gamma-Gamma {gg.to_dict()}")


def test_cdnow_standard_errors_are_plausible(cdnow_fit: tuple[BgNbd, GammaGamma]) -> None:
    for model in cdnow_fit:
        assert model.fit is not None
        se = np.array(model.fit.std_errors)
        assert np.all(np.isfinite(se) & (se > 0))
        assert np.all(se < np.array(model.params))  # every parameter is well away from zero


def test_published_conditional_expectation() -> None:
    # FHL 2005a: a customer with x = 2, t_x = 30.43, T = 38.86 makes 1.226 purchases in the next 39 weeks
    assert PUBLISHED.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


# --- recovery of known parameters at scale -----------------------------------------------------

def test_fit_recovers_known_parameters_of_100k_customers() -> None:
    truth = (0.5, 4.0, 0.7, 3.0)
    rng = np.random.default_rng(14)
    n = 100_000
    x, t_x, T = simulate(n, *truth, T=rng.uniform(26, 78, n), rng=rng)
    started = time.perf_counter()
    bg = fit_bgnbd(x, t_x, T)
    seconds = time.perf_counter() - started
    assert bg.fit is not None
    print(f"\nBG/NBD on {n} simulated customers: {seconds:.2f} s, {bg.fit.iterations} iterations, "
          f"{dict(zip(bg.PARAMS, np.round(bg.params, 4).tolist(), strict=True))}")
    for got, true, se in zip(bg.params, truth, bg.fit.std_errors, strict=True):
        assert got == pytest.approx(true, rel=0.05)
        assert abs(got - true) < 3 * se


def test_spend_fit_recovers_known_parameters() -> None:
    p, q, gamma = 6.0, 4.0, 15.0
    rng = np.random.default_rng(5)
    n = 20_000
    x = rng.integers(1, 8, n).astype(float)
    nu = rng.gamma(q, 1 / gamma, n)
    m = rng.gamma(p * x, 1 / nu) / x  # the mean of x Gamma(p, nu) amounts
    gg = fit_gamma_gamma(x, m)
    assert gg.fit is not None
    for got, true, se in zip(gg.params, (p, q, gamma), gg.fit.std_errors, strict=True):
        assert got == pytest.approx(true, rel=0.1)
        assert abs(got - true) < 3 * se


# --- likelihoods and gradients -----------------------------------------------------------------

def _numeric_gradient(f, params: tuple[float, ...], h: float = 1e-6) -> np.ndarray:
    out = []
    for k in range(len(params)):
        up, down = list(params), list(params)
        up[k] *= 1 + h
        down[k] *= 1 - h
        out.append((f(up) - f(down)) / (2 * h * params[k]))
    return np.array(out)


@pytest.mark.parametrize("params", [(0.243, 4.414, 0.793, 2.426), (2.0, 0.5, 3.0, 0.4),
                                    (0.1, 30.0, 1.5, 9.0)])
def test_bgnbd_gradient_is_the_derivative(cdnow: models.Cohort, params: tuple[float, ...]) -> None:
    ll, grad = bgnbd_loglik(params, cdnow.x, cdnow.t_x, cdnow.T)
    numeric = _numeric_gradient(lambda p: bgnbd_loglik(p, cdnow.x, cdnow.t_x, cdnow.T)[0], params)
    assert np.isfinite(ll)
    assert grad == pytest.approx(numeric, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("params", [(6.25, 3.74, 15.44), (0.8, 1.5, 2.0), (20.0, 10.0, 100.0)])
def test_gamma_gamma_gradient_is_the_derivative(cdnow: models.Cohort, params: tuple[float, ...]) -> None:
    rep = cdnow.x > 0
    x, m = cdnow.x[rep], cdnow.m_x[rep]
    _, grad = gamma_gamma_loglik(params, x, m)
    numeric = _numeric_gradient(lambda p: gamma_gamma_loglik(p, x, m)[0], params)
    assert grad == pytest.approx(numeric, rel=1e-5, abs=1e-4)


def test_bgnbd_likelihood_of_one_customer_by_hand() -> None:
    r, alpha, a, b = 0.5, 3.0, 0.8, 2.5
    x, t_x, T = 3, 10.0, 20.0
    from math import gamma as G

    a1 = G(r + x) * alpha**r / G(r)
    a2 = G(a + b) * G(b + x) / (G(b) * G(a + b + x))
    a3 = (alpha + T) ** -(r + x)
    a4 = a / (b + x - 1) * (alpha + t_x) ** -(r + x)
    ll, _ = bgnbd_loglik((r, alpha, a, b), [x, 0], [t_x, 0], [T, T])
    none = (alpha / (alpha + T)) ** r  # x = 0: A1 A2 A3 = alpha^r (alpha + T)^-r
    assert ll == pytest.approx(np.log(a1 * a2 * (a3 + a4)) + np.log(none))


def test_counts_give_the_same_likelihood(cdnow: models.Cohort) -> None:
    counts = Counts.of(cdnow.x)
    assert np.array_equal(counts.values[counts.inverse], cdnow.x)
    assert bgnbd_loglik(PUBLISHED.params, counts, cdnow.t_x, cdnow.T)[0] == \
        bgnbd_loglik(PUBLISHED.params, cdnow.x, cdnow.t_x, cdnow.T)[0]


# --- customer-level figures --------------------------------------------------------------------

def test_p_alive_is_a_probability_that_falls_with_silence() -> None:
    T = np.linspace(20, 200, 50)
    for x, t_x in ((1, 5.0), (4, 19.0), (40, 19.5)):
        alive = PUBLISHED.p_alive(x, t_x, T)
        assert np.all((alive > 0) & (alive <= 1))
        assert np.all(np.diff(alive) < 0)
    assert np.all(PUBLISHED.p_alive(0, 0, T) == 1)  # BG/NBD: no dropout before a repeat purchase
    assert PUBLISHED.p_alive(3, 10, 10) > PUBLISHED.p_alive(3, 5, 10)  # a recent purchase keeps one alive


def test_figures_are_vectorised_over_customers(cdnow: models.Cohort) -> None:
    alive = PUBLISHED.p_alive(cdnow.x, cdnow.t_x, cdnow.T)
    expected = PUBLISHED.expected_purchases(52, cdnow.x, cdnow.t_x, cdnow.T)
    assert alive.shape == expected.shape == (len(cdnow),)
    one = cdnow.customer_ids.index("00004")
    assert expected[one] == PUBLISHED.expected_purchases(52, cdnow.x[one], cdnow.t_x[one], cdnow.T[one])
    assert np.all(expected >= 0)


def test_expected_purchases_grow_from_zero_with_the_horizon() -> None:
    t = np.array([0.0, 1, 4, 13, 52, 520])
    for x, t_x, T in ((0, 0, 0), (0, 0, 30), (2, 30.43, 38.86), (25, 38, 39), (300, 77, 78)):
        expected = PUBLISHED.expected_purchases(t, x, t_x, T)
        assert expected[0] == 0
        assert np.all(np.isfinite(expected)) and np.all(np.diff(expected) > 0)


@pytest.mark.parametrize("model", [PUBLISHED, BgNbd(1.3, 2.0, 2.5, 4.0), BgNbd(0.3, 8.0, 0.4, 0.9)])
def test_expected_purchases_match_the_papers_formula(model: BgNbd) -> None:
    r, alpha, a, b = model.params
    for x, t_x, T in ((0, 0, 20), (1, 3, 20), (2, 30.43, 38.86), (7, 12, 40)):
        t = 26.0
        alive = 1 / (1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
        z = t / (alpha + T + t)
        paper = (a + b + x - 1) / (a - 1) * (
            1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)) * alive
        assert model.expected_purchases(t, x, t_x, T) == pytest.approx(paper, rel=1e-9)


def test_expected_purchases_of_a_new_customer_agree_with_simulation() -> None:
    rng = np.random.default_rng(8)
    n, t = 200_000, 30.0
    r, alpha, a, b = PUBLISHED.params
    x, _, _ = simulate(n, r, alpha, a, b, np.full(n, t), rng)
    assert PUBLISHED.expected_purchases(t, 0, 0, 0) == pytest.approx(x.mean(), rel=0.02)


def test_expected_purchases_are_continuous_at_a_equal_to_one() -> None:
    at, below, above = (BgNbd(0.5, 4.0, a, 3.0).expected_purchases(20, 3, 10, 30)
                        for a in (1.0, 0.999, 1.001))
    assert min(below, above) < at < max(below, above)
    assert at == pytest.approx((below + above) / 2, rel=1e-5)


def test_expected_order_value_shrinks_a_customer_mean_to_the_population_mean() -> None:
    gg = GammaGamma(6.25, 3.74, 15.44)
    assert gg.mean_order_value == pytest.approx(6.25 * 15.44 / 2.74)
    assert gg.expected_order_value(0, 0) == pytest.approx(gg.mean_order_value)
    few, many = gg.expected_order_value([1, 50], [100.0, 100.0])
    assert gg.mean_order_value < few < many < 100


def test_expected_value_is_discounted_expected_purchases_times_order_value(
        cdnow: models.Cohort, cdnow_fit: tuple[BgNbd, GammaGamma]) -> None:
    bg, gg = cdnow_fit
    h = (cdnow.x, cdnow.t_x, cdnow.T)
    undiscounted = discounted_expected_purchases(bg, *h, 52)
    assert undiscounted == pytest.approx(bg.expected_purchases(52, *h), rel=1e-12)
    assert discounted_expected_purchases(bg, *h, 10.5) == pytest.approx(bg.expected_purchases(10.5, *h))
    discounted = discounted_expected_purchases(bg, *h, 52, discount_rate=0.15)
    assert np.all(discounted < undiscounted) and np.all(discounted > undiscounted / 1.15)
    value = expected_value(bg, gg, *h, cdnow.m_x, 52, 0.15)
    assert value == pytest.approx(gg.expected_order_value(cdnow.x, cdnow.m_x) * discounted)
    assert np.all(value >= 0)


# --- parameter sets ----------------------------------------------------------------------------

def test_parameter_sets_round_trip_through_json(cdnow_fit: tuple[BgNbd, GammaGamma]) -> None:
    for model in (*cdnow_fit, PUBLISHED):
        again = type(model).from_dict(json.loads(json.dumps(model.to_dict())))
        assert again == model and again.fit == model.fit
    with pytest.raises(ValueError, match="not a gamma_gamma parameter set"):
        GammaGamma.from_dict(PUBLISHED.to_dict())
    with pytest.raises(ValueError, match="version 1"):
        BgNbd.from_dict({**PUBLISHED.to_dict(), "version": 2})
    with pytest.raises(ValueError, match="alpha must be a positive number"):
        BgNbd(0.2, -1.0, 0.7, 2.0)
    with pytest.raises(ValueError, match="q must exceed 1"):
        GammaGamma(6.0, 0.9, 15.0)
    with pytest.raises(AttributeError):
        PUBLISHED.r = 1.0  # type: ignore[misc]


# --- data that cannot support a fit ------------------------------------------------------------

def test_nobody_repeats() -> None:
    with pytest.raises(FitError, match="0 of 500 customers made a repeat purchase"):
        fit_bgnbd(np.zeros(500), np.zeros(500), np.full(500, 30.0))
    with pytest.raises(FitError, match="Gamma-Gamma: 0 customers"):
        fit_gamma_gamma(np.zeros(500), np.zeros(500))


def test_too_few_repeat_buyers() -> None:
    x = np.r_[np.ones(9), np.zeros(1000)]
    with pytest.raises(FitError, match="9 of 1009 customers made a repeat purchase; at least 10"):
        fit_bgnbd(x, x * 5, np.full(x.size, 30.0))


def test_no_dropout_is_not_identified() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    T = rng.uniform(26, 78, n)
    x = rng.poisson(rng.gamma(0.5, 1 / 4, n) * T).astype(float)  # purchases forever: nobody drops out
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)  # the latest of x uniform times
    with pytest.raises(FitError, match="ran to the bound.*no sign that customers drop out"):
        fit_bgnbd(x, t_x, T)


def test_heavy_tailed_spend_is_refused() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    x = rng.integers(1, 6, n).astype(float)
    m = rng.gamma(5 * x, 1 / rng.gamma(0.7, 1 / 10, n)) / x
    with pytest.raises(FitError, match="q = .* <= 1, so the mean spend is infinite"):
        fit_gamma_gamma(x, m)


def test_identical_spend_is_refused() -> None:
    with pytest.raises(FitError, match="every repeat customer spent the same"):
        fit_gamma_gamma(np.ones(50), np.full(50, 20.0))


def test_an_optimiser_that_stops_early_is_an_error(cdnow: models.Cohort, monkeypatch) -> None:
    real = models.minimize
    monkeypatch.setattr(models, "minimize", lambda *a, **k: real(*a, **{**k, "options": {"maxiter": 2}}))
    with pytest.raises(FitError, match="did not converge after 2 iterations"):
        fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T)


def test_a_fit_stalled_on_its_way_to_a_bound_says_the_data_cannot_identify_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen on the bench's ledger (customers who come back after lapsing): a ran towards 0 and
    the optimiser stalled on the flat ridge before the bound. The error names the cause."""
    from scipy.optimize import OptimizeResult

    stalled = np.log([1.35, 19.1, 3e-5, 8.8e3])  # r, alpha, a, b
    monkeypatch.setattr(models, "minimize", lambda *a, **k: OptimizeResult(
        x=stalled, nit=42, message="CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"))
    monkeypatch.setattr(models, "_POLISH_STEPS", 0)
    rng = np.random.default_rng(5)
    T = rng.uniform(26, 78, 2000)
    x = rng.poisson(2.0, 2000).astype(float)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)
    with pytest.raises(FitError, match="a, b kept running towards the bound.*no sign that "
                                       "customers drop out"):
        fit_bgnbd(x, t_x, T)


def test_a_likelihood_that_is_not_finite_is_an_error() -> None:
    with pytest.raises(FitError, match="not finite at the starting point"):
        models._maximise("test", ("u",), lambda p: (float("nan"), np.zeros(1)), (1.0,), 1, "")


def test_histories_that_cannot_be_are_refused() -> None:
    for x, t_x, T in ((1.5, 1, 2), (-1, 0, 2), (2, 3, 2), (0, 1, 2), (1, float("nan"), 2)):
        with pytest.raises(ValueError, match="not a purchase history"):
            PUBLISHED.p_alive(x, t_x, T)


# --- transactions: summary and CSV -------------------------------------------------------------

def test_one_purchase_per_customer_day() -> None:
    day = date(2024, 1, 1)
    rows = [
        Transaction("a", day, Decimal("10")),
        Transaction("a", day, Decimal("5")),  # same day: one purchase of 15
        Transaction("a", date(2024, 1, 15), Decimal("20")),
        Transaction("a", date(2024, 1, 15), Decimal("4")),
        Transaction("a", date(2024, 1, 29), Decimal("6")),
        Transaction("a", date(2024, 3, 1), Decimal("99")),  # after the calibration end
        Transaction("b", date(2024, 1, 8), Decimal("7")),
        Transaction("c", date(2024, 2, 1), Decimal("1")),  # first purchase after the end: not in the cohort
    ]
    c = summarise(rows, date(2024, 1, 29))
    assert c.customer_ids == ("a", "b")
    assert c.x.tolist() == [2, 0]
    assert c.t_x.tolist() == [4, 0]
    assert c.T.tolist() == [4, 3]
    assert c.m_x.tolist() == [15, 0]  # (24 + 6) / 2: the first purchase day is not in the mean


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_keeps_ids_as_strings_and_reads_both_date_forms(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffdate,amount,customer_id,channel\n"
                            "2024-01-31,12.50,007,web\n20240201, 3 ,007,shop\n\n2024-02-02,0,1e3,web\n")
    assert read_transactions(path) == [
        Transaction("007", date(2024, 1, 31), Decimal("12.50")),
        Transaction("007", date(2024, 2, 1), Decimal("3")),
        Transaction("1e3", date(2024, 2, 2), Decimal("0")),
    ]


def test_csv_errors_name_their_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer_id,date,amount\n"
                            "a,2024-01-31,1\n"
                            "a,2024-02-30,1\n"
                            "b,31/01/2024,1\n"
                            "c,2024-01-31,ten\n"
                            "d,2024-01-31,-5\n"
                            ",2024-01-31,1\n"
                            "e,2024-01-31\n"
                            "f,2024-01-31,NaN\n")
    with pytest.raises(TransactionsError) as e:
        read_transactions(path)
    message = str(e.value)
    assert "7 bad row(s)" in message
    for line, reason in ((3, "not a date"), (4, "not a date"), (5, "not a decimal number"), (6, ">= 0"),
                         (7, "empty customer_id"), (8, "field(s)"), (9, ">= 0")):
        assert f"line {line}: " in message and reason in message.split(f"line {line}: ")[1].split("\n")[0]
    assert "line 2:" not in message


def test_csv_needs_its_header_and_utf8(tmp_path: Path) -> None:
    with pytest.raises(TransactionsError, match="line 1: the header needs .* missing amount"):
        read_transactions(_write(tmp_path, "customer_id,date,value\na,2024-01-31,1\n"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"customer_id,date,amount\nM\xfcller,2024-01-31,1\n")
    with pytest.raises(TransactionsError, match="not UTF-8 text"):
        read_transactions(latin)


# --- the command line --------------------------------------------------------------------------

def test_models_fit_prints_parameters_errors_and_time(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["models", "fit", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30"])
    out = capsys.readouterr().out
    assert "2357 customers, 946 with a repeat purchase" in out
    assert "log-likelihood -9582.43" in out
    assert "alpha        4.4136  (s.e. 0.3782)" in out
    assert "gamma       15.4435" in out
    cli.main(["models", "fit", "--transactions", str(CDNOW), "--calibration-end", "19970930", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["customers"] == 2357
    fitted = BgNbd.from_dict(report["models"][0])
    assert fitted.params == pytest.approx((0.2426, 4.4136, 0.7929, 2.4259), abs=5e-5)


def test_models_score_writes_one_row_per_customer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.csv"
    cli.main(["models", "score", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
              "--horizon-weeks", "39", "--discount-rate", "0.15", "--output", str(out)])
    assert "log-likelihood -9582.43" in capsys.readouterr().err
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2357
    assert {"customer_id", "p_alive", "expected_purchases", "expected_value"} <= set(rows[0])
    first = next(r for r in rows if r["customer_id"] == "00004")
    assert float(first["expected_purchases"]) == pytest.approx(1.226, abs=1e-3)
    assert 0 < float(first["expected_value"]) < float(first["expected_purchases"]) * float(
        first["expected_order_value"])


def test_models_commands_fail_with_a_message(tmp_path: Path) -> None:
    bad = _write(tmp_path, "customer_id,date,amount\na,2024-01-31,x\n")
    with pytest.raises(SystemExit, match="line 2: amount is not a decimal number"):
        cli.main(["models", "fit", "--transactions", str(bad), "--calibration-end", "2024-12-31"])
    few = _write(tmp_path, "customer_id,date,amount\na,2024-01-31,1\na,2024-02-28,2\nb,2024-01-02,3\n")
    with pytest.raises(SystemExit, match="at least 10 are needed"):
        cli.main(["models", "score", "--transactions", str(few), "--calibration-end", "2024-12-31",
                  "--horizon-weeks", "10"])
    with pytest.raises(SystemExit, match="no purchase on or before 2023-12-31"):
        cli.main(["models", "fit", "--transactions", str(few), "--calibration-end", "2023-12-31"])
