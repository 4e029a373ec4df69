"""Purchase and spend models: BG/NBD and Gamma-Gamma, fitted by maximum likelihood. Pure.

Conventions, as in the papers below: a customer's purchases are days (several transactions of one
customer on one day are one purchase, their amounts summed); the first purchase is the trial, so
``x`` counts the *repeat* purchase days in the calibration period; time is in weeks of 7 days,
fractional, from the first purchase: ``t_x`` is the time of the last purchase and ``T`` the time
of the calibration end. The spend model sees ``m_x``, the mean amount of the repeat purchase days
(the first purchase excluded).

- FHL 2005a: P. S. Fader, B. G. S. Hardie, K. L. Lee, "'Counting your customers' the easy way: an
  alternative to the Pareto/NBD model", Marketing Science 24(2), 275-284 (BG/NBD: likelihood
  eq. 6, conditional expectation eq. 10).
- P. S. Fader, B. G. S. Hardie, K. L. Lee, "Computing P(alive) using the BG/NBD model" (2008 note);
  P. S. Fader, B. G. S. Hardie, "Overcoming the BG/NBD model's #NUM! error problem" (2013 note).
- FHL 2005b: P. S. Fader, B. G. S. Hardie, K. L. Lee, "RFM and CLV: using iso-value curves for
  customer base analysis", Journal of Marketing Research 42(4), 415-430 (Gamma-Gamma spend model,
  discounted expected transactions, CLV).
- P. S. Fader, B. G. S. Hardie, "The Gamma-Gamma model of monetary value" (2013 note).

Fits maximise the log-likelihood with its analytic gradient over the logarithms of the parameters
(L-BFGS-B, bounded), then take standard errors from the Hessian at the optimum. A fit that the data
cannot support raises :class:`FitError` with the reason; it never returns a doubtful answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

MIN_REPEAT_CUSTOMERS = 10  # below this a fit says so instead of guessing
WEEKS_PER_YEAR = 52  # FHL 2005b: a 15% annual rate is a weekly rate of ln(1.15)/52
_LOG_BOUND = np.log(1e6)  # every parameter is kept in [1e-6, 1e6]
_POLISH_STEPS = 5  # at most, Newton steps after L-BFGS-B
_DRIFT = _LOG_BOUND * 0.6  # a parameter beyond [4e-4, 4e3] is on its way to a bound
_GTOL = 1e-6  # largest accepted gradient of the mean log-likelihood (log parameters) at the optimum

Array = np.ndarray


class FitError(ValueError):
    """The data cannot support the fit, or the optimiser did not find a proper maximum."""


# --- from transactions to the per-customer summary -------------------------------------------

class Transaction(NamedTuple):
    customer_id: str
    date: date
    amount: Decimal


@dataclass(frozen=True, eq=False)
class Cohort:
    """One entry per customer whose first purchase is on or before the calibration end."""

    calibration_end: date
    customer_ids: tuple[str, ...]
    x: Array  # repeat purchase days in the calibration period
    t_x: Array  # weeks from the first purchase to the last one
    T: Array  # weeks from the first purchase to the calibration end
    m_x: Array  # mean amount of the repeat purchase days (0 where x == 0)

    def __len__(self) -> int:
        return len(self.customer_ids)


def summarise(transactions: Iterable[Transaction], calibration_end: date) -> Cohort:
    """Purchase days per customer up to ``calibration_end`` (inclusive); later ones are ignored."""
    days: dict[str, dict[date, Decimal]] = {}
    for customer_id, day, amount in transactions:
        if day <= calibration_end:
            spent = days.setdefault(customer_id, {})
            spent[day] = spent.get(day, Decimal(0)) + amount
    ids = tuple(sorted(days))
    x, t_x, T, m_x = (np.zeros(len(ids)) for _ in range(4))
    for i, customer_id in enumerate(ids):
        spent = days[customer_id]
        first, *repeats = sorted(spent)
        x[i] = len(repeats)
        t_x[i] = (repeats[-1] - first).days / 7 if repeats else 0.0
        T[i] = (calibration_end - first).days / 7
        m_x[i] = float(sum(spent[d] for d in repeats) / len(repeats)) if repeats else 0.0
    return Cohort(calibration_end, ids, x, t_x, T, m_x)


# --- parameter sets ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FitSummary:
    """How a parameter set was obtained."""

    log_likelihood: float
    std_errors: tuple[float, ...]  # in the order of the model's PARAMS
    customers: int  # customers the likelihood saw
    iterations: int
    fit_seconds: float


@dataclass(frozen=True)
class _Params:
    MODEL: ClassVar[str]
    PARAMS: ClassVar[tuple[str, ...]]
    VERSION: ClassVar[int] = 1  # of the to_dict shape; a stored set gets its own id elsewhere

    def __post_init__(self) -> None:
        for name in self.PARAMS:
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{self.MODEL} parameter {name} must be a positive number, not {value!r}")

    @property
    def params(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in self.PARAMS)

    def to_dict(self) -> dict[str, Any]:
        fit = self.fit  # type: ignore[attr-defined]
        return {
            "model": self.MODEL, "version": self.VERSION, "time_unit": "week",
            "params": dict(zip(self.PARAMS, self.params, strict=True)),
            "fit": None if fit is None else {
                "log_likelihood": fit.log_likelihood,
                "std_errors": dict(zip(self.PARAMS, fit.std_errors, strict=True)),
                "customers": fit.customers, "iterations": fit.iterations, "fit_seconds": fit.fit_seconds,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("model") != cls.MODEL or data.get("version") != cls.VERSION:
            raise ValueError(f"not a {cls.MODEL} parameter set of version {cls.VERSION}: "
                             f"model {data.get('model')!r}, version {data.get('version')!r}")
        fit = data.get("fit")
        summary = None if fit is None else FitSummary(
            float(fit["log_likelihood"]), tuple(float(fit["std_errors"][n]) for n in cls.PARAMS),
            int(fit["customers"]), int(fit["iterations"]), float(fit["fit_seconds"]))
        return cls(*(float(data["params"][n]) for n in cls.PARAMS), fit=summary)  # type: ignore[call-arg]


@dataclass(frozen=True)
class BgNbd(_Params):
    """BG/NBD purchase model (FHL 2005a), time in weeks.

    Purchase rate while alive ~ Gamma(r, alpha); after each repeat purchase a customer drops out
    with a probability ~ Beta(a, b).
    """

    MODEL: ClassVar[str] = "bgnbd"
    PARAMS: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    r: float
    alpha: float
    a: float
    b: float
    fit: FitSummary | None = field(default=None, compare=False)

    def _log_dropout_odds(self, x: Array, t_x: Array, T: Array) -> Array:
        """log of P(dropped out right after t_x) / P(alive at T), given the history; -inf if x == 0."""
        r, alpha, a, b = self.params
        rep = x > 0
        odds = np.full(np.broadcast(x, t_x, T).shape, -np.inf)
        xr, txr, Tr = (np.broadcast_to(v, odds.shape)[rep] for v in (x, t_x, T))
        odds[rep] = np.log(a) - np.log(b + xr - 1) + (r + xr) * (np.log(alpha + Tr) - np.log(alpha + txr))
        return odds

    def p_alive(self, x: Any, t_x: Any, T: Any) -> Array:
        """P(alive at T | x, t_x, T) (the 2008 note); 1 for x == 0: in BG/NBD a customer can only
        drop out right after a repeat purchase, so silence after the first one never lowers it."""
        x, t_x, T = _history(x, t_x, T)
        return expit(-self._log_dropout_odds(x, t_x, T))

    def expected_purchases(self, t: Any, x: Any, t_x: Any, T: Any) -> Array:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005a, eq. 10).

        Computed with Euler's transformation 2F1(A, B; c; z) = (1-z)^(c-A-B) 2F1(c-A, c-B; c; z),
        which turns the paper's 2F1(r+x, b+x; a+b+x-1; z) into one whose series converges fast
        for the large x of frequent buyers (the remedy of the 2013 note).
        """
        r, alpha, a, b = self.params
        x, t_x, T = _history(x, t_x, T)
        t = np.asarray(t, dtype=float)
        if np.any(~np.isfinite(t) | (t < 0)):
            raise ValueError("the horizon t must be finite and >= 0")
        z = t / (alpha + T + t)

        def if_alive(a: float) -> Array:  # E[Y(t)] given alive at T: c (1 - (1-z)^(a-1) F) / (a - 1)
            c = a + b + x - 1
            return c / (a - 1) * (1 - (1 - z) ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, c, z))

        # a = 1 is a removable singularity: there, the mean of both sides is exact to O(1e-8)
        mean = if_alive(a) if abs(a - 1) >= 1e-4 else (if_alive(1 - 2e-4) + if_alive(1 + 2e-4)) / 2
        return mean * expit(-self._log_dropout_odds(x, t_x, T))


@dataclass(frozen=True)
class GammaGamma(_Params):
    """Gamma-Gamma spend model (FHL 2005b; Fader and Hardie 2013): a customer's purchase amounts
    ~ Gamma(p, nu), nu across customers ~ Gamma(q, gamma). q must exceed 1 (a finite mean spend)."""

    MODEL: ClassVar[str] = "gamma_gamma"
    PARAMS: ClassVar[tuple[str, ...]] = ("p", "q", "gamma")
    p: float
    q: float
    gamma: float
    fit: FitSummary | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.q <= 1:
            raise ValueError(f"gamma_gamma parameter q must exceed 1 (got {self.q}): "
                             "the mean spend is infinite otherwise")

    @property
    def mean_order_value(self) -> float:
        """Population mean amount of a purchase, p gamma / (q - 1)."""
        return self.p * self.gamma / (self.q - 1)

    def expected_order_value(self, x: Any, m_x: Any) -> Array:
        """E[M | x, m_x] = (gamma + m_x x) p / (p x + q - 1): a weighted mean of the population
        mean and the customer's own mean (Fader and Hardie 2013); the population mean at x == 0."""
        x, m_x = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(m_x, dtype=float))
        if np.any(~np.isfinite(x) | (x < 0) | ~np.isfinite(m_x) | (m_x < 0)):
            raise ValueError("x and m_x must be finite and >= 0")
        p, q, gamma = self.params
        return (gamma + m_x * x) * p / (p * x + q - 1)


# --- lifetime value ----------------------------------------------------------------------------

def discounted_expected_purchases(model: BgNbd, x: Any, t_x: Any, T: Any, horizon_weeks: float,
                                  discount_rate: float = 0.0, step_weeks: float = 1.0) -> Array:
    """Expected purchases in the next ``horizon_weeks``, each period discounted to today.

    DEP = sum over periods k = 1..K of [E(Y(t_k)) - E(Y(t_{k-1}))] / (1 + d)^(t_k / 52), with
    t_k = min(k step, horizon) and E(Y(t)) the conditional expectation of FHL 2005a (eq. 10). With
    weekly steps this is the discrete form of FHL 2005b's discounted expected transactions (their
    continuous weekly rate ln(1 + d) / 52 for an annual rate d); purchases are discounted at the
    end of the period they fall in, so a longer step discounts a little more and costs less (one
    evaluation of E(Y) per period). With d = 0 it is E(Y(horizon)) whatever the step.
    """
    if not (np.isfinite(horizon_weeks) and horizon_weeks >= 0):
        raise ValueError("horizon_weeks must be finite and >= 0")
    if not (np.isfinite(discount_rate) and discount_rate > -1):
        raise ValueError("discount_rate must be a finite annual rate above -1")
    if not (np.isfinite(step_weeks) and step_weeks > 0):
        raise ValueError("step_weeks must be finite and > 0")
    x, t_x, T = _history(x, t_x, T)
    if discount_rate == 0:
        return model.expected_purchases(horizon_weeks, x, t_x, T) * np.ones(x.shape)
    total = np.zeros(x.shape)
    before = np.zeros(x.shape)
    for k in range(1, int(np.ceil(horizon_weeks / step_weeks - 1e-9)) + 1):
        t_k = min(k * step_weeks, horizon_weeks)
        now = model.expected_purchases(t_k, x, t_x, T)
        total += (now - before) * (1 + discount_rate) ** (-t_k / WEEKS_PER_YEAR)
        before = now
    return total


def expected_value(purchases: BgNbd, spend: GammaGamma, x: Any, t_x: Any, T: Any, m_x: Any,
                   horizon_weeks: float, discount_rate: float = 0.0,
                   step_weeks: float = 1.0) -> Array:
    """Expected customer lifetime value over the horizon: E[M | x, m_x] x DEP, as FHL 2005b's
    CLV = margin x E(M) x DET with a margin of 1 (the value is revenue; multiply by a margin for
    profit). Multiplying assumes spend independent of purchasing, as FHL 2005b found on CDNOW."""
    dep = discounted_expected_purchases(purchases, x, t_x, T, horizon_weeks, discount_rate,
                                        step_weeks)
    return spend.expected_order_value(x, m_x) * dep


# --- log-likelihoods and their gradients -------------------------------------------------------

class Counts(NamedTuple):
    """Purchase counts as their distinct values and an index: the special functions of a
    likelihood depend on a customer only through x, so they are evaluated once per value."""

    values: Array
    inverse: Array  # x == values[inverse]
    sizes: Array  # customers per value

    @classmethod
    def of(cls, x: Any) -> Counts:
        values, inverse, sizes = np.unique(np.asarray(x, dtype=float).reshape(-1), return_inverse=True,
                                         return_counts=True)
        return cls(values, inverse.reshape(-1), sizes.astype(float))


def bgnbd_loglik(params: Iterable[float], x: Any, t_x: Any, T: Any) -> tuple[float, Array]:
    """Total BG/NBD log-likelihood (FHL 2005a, eq. 6) and its gradient in (r, alpha, a, b).

    Per customer: ln A1 + ln A2 + ln(A3 + [x > 0] A4), with A1 = Gamma(r+x) alpha^r / Gamma(r),
    A2 = B(a, b+x) / B(a, b), A3 = (alpha+T)^-(r+x), A4 = a / (b+x-1) (alpha+t_x)^-(r+x).
    """
    r, alpha, a, b = params
    counts = x if isinstance(x, Counts) else Counts.of(x)
    xs, i, n = counts
    x, t_x, T = xs[i], np.asarray(t_x, dtype=float).reshape(-1), np.asarray(T, dtype=float).reshape(-1)
    rx = r + x
    ln_at, ln_atx = np.log(alpha + T), np.log(alpha + t_x)
    ln_alive = -rx * ln_at  # ln A3: still alive at T
    rep = xs > 0
    bx1 = np.where(rep, b + xs - 1, 1.0)  # b + x - 1, where x > 0
    ln_gone = np.where(rep, np.log(a) - np.log(bx1), -np.inf)[i] - rx * ln_atx  # ln A4: gone after t_x
    ln_mix = np.logaddexp(ln_alive, ln_gone)
    w_alive, w_gone = np.exp(ln_alive - ln_mix), np.exp(ln_gone - ln_mix)
    per_x = gammaln(r + xs) - gammaln(r) + betaln(a, b + xs) - betaln(a, b)  # ln A1 - r ln alpha + ln A2
    ll = _dot(n, per_x) + x.size * r * np.log(alpha) + ln_mix.sum()
    ab = digamma(a + b) - digamma(a + b + xs)
    grad = np.array([
        _dot(n, digamma(r + xs) - digamma(r)) + x.size * np.log(alpha)
        - _dot(w_alive, ln_at) - _dot(w_gone, ln_atx),
        x.size * r / alpha - _dot(rx, w_alive / (alpha + T) + w_gone / (alpha + t_x)),
        _dot(n, ab) + w_gone.sum() / a,
        _dot(n, ab + digamma(b + xs) - digamma(b)) - _dot(w_gone, (1 / bx1)[i]),
    ])
    return float(ll), grad


def gamma_gamma_loglik(params: Iterable[float], x: Any, m_x: Any) -> tuple[float, Array]:
    """Total Gamma-Gamma log-likelihood of the mean spends m_x of x purchases (Fader and Hardie
    2013) and its gradient in (p, q, gamma). Needs x > 0 and m_x > 0. Per customer:
    ln Gamma(px+q) - ln Gamma(px) - ln Gamma(q) + q ln gamma + (px-1) ln m_x + px ln x
    - (px+q) ln(gamma + m_x x).
    """
    p, q, gamma = params
    counts = x if isinstance(x, Counts) else Counts.of(x)
    xs, i, n = counts
    x, m = xs[i], np.asarray(m_x, dtype=float).reshape(-1)
    px = p * x
    ln_m, ln_sum = np.log(m), np.log(gamma + m * x)
    per_x = gammaln(p * xs + q) - gammaln(p * xs) - gammaln(q) + p * xs * np.log(xs)
    ll = _dot(n, per_x) + x.size * q * np.log(gamma) + _dot(px - 1, ln_m) - _dot(px + q, ln_sum)
    psi = digamma(p * xs + q)
    grad = np.array([
        _dot(n, xs * (psi - digamma(p * xs) + np.log(xs))) + _dot(x, ln_m - ln_sum),
        _dot(n, psi - digamma(q)) + x.size * np.log(gamma) - ln_sum.sum(),
        x.size * q / gamma - _dot(px + q, 1 / (gamma + m * x)),
    ])
    return float(ll), grad


# --- fitting -----------------------------------------------------------------------------------

def fit_bgnbd(x: Any, t_x: Any, T: Any) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters of a cohort (one entry per customer)."""
    started = time.perf_counter()
    x, t_x, T = _history(x, t_x, T)
    n, repeaters = x.size, int(np.count_nonzero(x))
    if repeaters < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"BG/NBD: {repeaters} of {n} customers made a repeat purchase; "
                       f"at least {MIN_REPEAT_CUSTOMERS} are needed to estimate purchase rates and dropout")
    counts = Counts.of(x)
    rate = x.sum() / max(T.sum(), 1e-9)  # repeat purchases per customer-week
    start = (1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0)  # r = 1: alpha from the mean rate
    theta, ll, se, its = _maximise("BG/NBD", BgNbd.PARAMS, lambda p: bgnbd_loglik(p, counts, t_x, T),
                                   start, n, "a tiny a or a huge b: no sign that customers drop out")
    r, alpha, a, b = theta
    return BgNbd(r, alpha, a, b, fit=FitSummary(ll, se, n, its, time.perf_counter() - started))


def fit_gamma_gamma(x: Any, m_x: Any) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters from the customers with x > 0 and m_x > 0 (a
    customer whose repeat purchases were all free says nothing about a positive spend)."""
    started = time.perf_counter()
    x, m = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(m_x, dtype=float))
    if np.any(~np.isfinite(x) | (x < 0) | ~np.isfinite(m) | (m < 0)):
        raise ValueError("x and m_x must be finite and >= 0")
    used = (x > 0) & (m > 0)
    n = int(np.count_nonzero(used))
    if n < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"Gamma-Gamma: {n} customers with a repeat purchase of positive amount; "
                       f"at least {MIN_REPEAT_CUSTOMERS} are needed to estimate the spend model")
    if np.ptp(m[used]) == 0:
        raise FitError("Gamma-Gamma: every repeat customer spent the same mean amount; "
                       "the spread of spending across customers cannot be estimated")
    counts, m = Counts.of(x[used]), m[used]
    start = (1.0, 2.0, float(m.mean()))  # mean spend p gamma / (q - 1) = mean(m_x)
    theta, ll, se, its = _maximise("Gamma-Gamma", GammaGamma.PARAMS,
                                   lambda p: gamma_gamma_loglik(p, counts, m), start, n,
                                   "a huge q and gamma: customers hardly differ in what they spend")
    if theta[1] <= 1:
        raise FitError(f"Gamma-Gamma: q = {theta[1]:.4g} <= 1, so the mean spend is infinite: spending "
                       "is too heavy-tailed for this model (look for outliers or refunds in the amounts)")
    p, q, gamma = theta
    return GammaGamma(p, q, gamma, fit=FitSummary(ll, se, n, its, time.perf_counter() - started))


def _maximise(model: str, names: tuple[str, ...], loglik: Callable[[Array], tuple[float, Array]],
              start: tuple[float, ...], n: int,
              hint: str) -> tuple[tuple[float, ...], float, tuple[float, ...], int]:
    """Maximise over log-parameters; return the parameters, log-likelihood, standard errors, iterations."""

    def negative_mean(theta: Array) -> tuple[float, Array]:
        params = np.exp(theta)
        ll, grad = loglik(params)
        return -ll / n, -grad * params / n

    theta0 = np.log(np.asarray(start))
    f0, g0 = negative_mean(theta0)
    if not (np.isfinite(f0) and np.all(np.isfinite(g0))):
        raise FitError(f"{model}: the log-likelihood is not finite at the starting point {start}")
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(names)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        res = minimize(negative_mean, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-9})
    x = res.x
    f, g = negative_mean(x)
    if not (np.isfinite(f) and np.all(np.isfinite(g))):
        raise FitError(f"{model}: the log-likelihood is not finite at the optimiser's result ({res.message})")

    def hessian(theta: Array) -> Array:
        return _hessian(lambda th: loglik(np.exp(th))[1] * np.exp(th), theta)

    # L-BFGS-B can stop on a flat stretch (its relative reduction of f) short of the gradient
    # tolerance: finish with Newton steps while they go downhill (quadratic convergence from here)
    for _ in range(_POLISH_STEPS):
        if np.max(np.abs(g)) <= _GTOL * 1e-3:
            break
        try:
            step = np.linalg.solve(hessian(x) / n, g)
        except np.linalg.LinAlgError:
            break
        x_new = np.clip(x - step, -_LOG_BOUND, _LOG_BOUND)
        f_new, g_new = negative_mean(x_new)
        if not (np.isfinite(f_new) and np.all(np.isfinite(g_new))) or f_new > f:
            break
        x, f, g = x_new, f_new, g_new
    values = ", ".join(f"{nm} = {np.exp(t):.3g}" for nm, t in zip(names, x, strict=True))
    at_bound = [nm for nm, t in zip(names, x, strict=True) if abs(t) > _LOG_BOUND - 1e-3]
    if at_bound:
        raise FitError(f"{model}: {', '.join(at_bound)} ran to the bound of [1e-6, 1e6] ({values}): "
                       f"the data cannot identify the model (typically {hint})")
    converged = np.max(np.abs(g)) <= _GTOL
    # on the way to a bound, the likelihood flattens out along a ridge: the optimiser stalls (or
    # stops short of concavity) before it gets there, and the cause is the same
    drifting = [nm for nm, t in zip(names, x, strict=True) if abs(t) > _DRIFT]
    if drifting and not converged:
        raise FitError(f"{model}: {', '.join(drifting)} kept running towards the bound of [1e-6, 1e6] "
                       f"({values}) without converging: the data cannot identify the model "
                       f"(typically {hint})")
    if not converged:
        raise FitError(f"{model}: the optimiser did not converge after {res.nit} iterations "
                       f"({res.message}; largest gradient {np.max(np.abs(g)):.2g})")
    params = np.exp(x)
    h = hessian(x)
    eigenvalues = np.linalg.eigvalsh(h)
    if not (np.all(np.isfinite(eigenvalues)) and eigenvalues.min() > 0):
        why = f" (typically {hint})" if drifting else ""
        raise FitError(f"{model}: the log-likelihood is not strictly concave at the optimum "
                       f"({values}): no standard errors, the parameters are not identified{why}")
    se = params * np.sqrt(np.diag(np.linalg.inv(h)))  # delta method: the gradient is zero there
    return tuple(params.tolist()), -f * n, tuple(se.tolist()), int(res.nit)


def _hessian(gradient: Callable[[Array], Array], theta: Array, h: float = 1e-5) -> Array:
    """Hessian of the *negative* log-likelihood by central differences of its analytic gradient."""
    columns = [(gradient(theta - h * e) - gradient(theta + h * e)) / (2 * h) for e in np.eye(theta.size)]
    hessian = np.column_stack(columns)
    return (hessian + hessian.T) / 2


def _dot(u: Array, v: Array) -> float:
    """Sum of products without BLAS, whose threads only contend on a small, busy machine."""
    return float(np.sum(u * v))


def _history(x: Any, t_x: Any, T: Any) -> tuple[Array, Array, Array]:
    x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, t_x, T)))
    bad = ~(np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T)) | (x < 0) | (x != np.round(x))
    bad |= (t_x < 0) | (t_x > T) | ((x == 0) & (t_x != 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"not a purchase history: x = {x.flat[i]}, t_x = {t_x.flat[i]}, T = {T.flat[i]} "
                         "(x a whole number >= 0; 0 <= t_x <= T; t_x = 0 when x = 0)")
    return x, t_x, T
