"""Overfitting statistics for a tuning run: the deflated Sharpe ratio and the PBO (CSCV).

Units and conventions
---------------------
Every Sharpe ratio here is **per period** (per candle): SR = mean(r) / std(r, ddof=1), not
annualised. To compare with ``research.backtest.metrics`` multiply by
sqrt(candles_per_year(timeframe)) (365-day years). The DSR and the PBO are unitless and do not
depend on the annualisation, as long as the chosen strategy's Sharpe and the trials' Sharpe
ratios are in the same units.

Kurtosis is **raw** (non-excess): a normal distribution has kurtosis 3. Skewness and kurtosis are
the plain sample moments (``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=False)``,
``bias=True``), as in Bailey & López de Prado.

Probabilistic Sharpe ratio (Bailey & López de Prado 2012), for n observations::

    PSR(SR*) = Φ( (SR - SR*) · sqrt(n - 1) / sqrt(1 - γ3·SR + (γ4 - 1)/4 · SR²) )

with γ3 the skewness and γ4 the raw kurtosis.

Expected maximum Sharpe ratio of N independent zero-skill trials whose Sharpe ratios have
variance V (Bailey, Borwein, López de Prado, Zhu 2014; γ = Euler–Mascheroni constant)::

    E[max SR] ≈ sqrt(V) · ( (1 - γ) · Φ⁻¹(1 - 1/N) + γ · Φ⁻¹(1 - 1/(N·e)) )

Deflated Sharpe ratio (Bailey & López de Prado 2014): DSR = PSR(SR* = E[max SR]), computed on
the chosen trial's returns, N = number of trials actually run, V = variance of the trials' Sharpe
ratios. It is the probability that the chosen trial's true Sharpe exceeds what the best of N
skill-less trials would show by luck alone.

Probability of backtest overfitting (Bailey, Borwein, López de Prado, Zhu 2017), by
combinatorially symmetric cross-validation (CSCV) on a T x N matrix (periods x trials):
split the rows into S contiguous blocks (S even); for every choice of S/2 blocks as in-sample
(IS), the other S/2 blocks are out-of-sample (OOS); take the trial n* with the best IS metric,
its OOS rank r among the N trials (1 = worst, N = best), ω = r / (N + 1), λ = ln(ω / (1 - ω)).
PBO = share of the C(S, S/2) combinations with λ <= 0, i.e. the IS winner is at or below the OOS
median. Ties: OOS ranks are average ranks; when several trials tie for the best IS metric, the
one with the worst OOS metric is taken (the pessimistic, column-order-free choice). A metric that
is undefined (a Sharpe without variance) ranks below every defined one.

Nothing here is random; no seed is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

__all__ = [
    "DSR_SIGNIFICANT",
    "PBO_OVERFIT",
    "DsrResult",
    "PboResult",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "overfitting_verdict",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "robust_sharpe_variance",
    "sharpe_per_period",
]

DSR_SIGNIFICANT = 0.95
"""A DSR below this is not significant: luck across the trials explains the Sharpe."""
PBO_OVERFIT = 0.5
"""A PBO above this means the IS winner is below the OOS median more often than not."""

# A Sharpe is undefined ("numerically constant" returns) when std <= RTOL x scale. The two-pass
# std of sharpe_per_period resolves spreads down to ~1e-16 x max|r|. The block-sum variance of
# CSCV, sum(x²) - sum(x)²/n on column-centred x, has a noise floor near sqrt(eps) ≈ 1.5e-8 x
# max|x|, so it uses a looser bound; no real return series has a spread that small.
_CONSTANT_RTOL = 1e-10
_BLOCK_CONSTANT_RTOL = 1e-6
_METRICS = ("sharpe", "mean")


@dataclass(frozen=True)
class DsrResult:
    """Deflated Sharpe ratio of the chosen trial and the inputs that produced it."""

    dsr: float  # probability in [0, 1]; NaN when undefined
    sr: float  # chosen trial's per-period Sharpe
    sr0: float  # E[max SR] of n_trials skill-less trials (per period)
    n_trials: int
    var_sharpe: float  # variance (ddof=1) of the finite trial Sharpe ratios
    skew: float
    kurtosis: float  # raw (normal = 3)
    n: int  # observations of the chosen trial


@dataclass(frozen=True)
class PboResult:
    """Probability of backtest overfitting by CSCV, with its per-combination detail."""

    pbo: float  # share of combinations with logit <= 0
    logits: np.ndarray  # λ per combination; finite, since ω lies in [1/(N+1), N/(N+1)]
    n_combinations: int
    n_splits: int
    n_trials: int
    is_metric: np.ndarray  # IS metric of the chosen trial, per combination
    oos_metric: np.ndarray  # OOS metric of the same trial, per combination
    # OLS slope of oos_metric on is_metric. IS and OOS are complementary halves of one sample,
    # so the slope is negative even for a real edge (about -0.7 in the planted-edge test);
    # read it against the same statistic on noise, not against zero.
    degradation_slope: float
    prob_oos_loss: float  # share of combinations where the chosen trial's OOS metric < 0


def sharpe_per_period(returns: np.ndarray) -> float:
    """Return mean / std(ddof=1) of `returns`, not annualised; NaN if undefined."""
    r = np.asarray(returns, dtype="float64").ravel()
    if r.size < 2 or not np.all(np.isfinite(r)):
        return math.nan
    std = float(np.std(r, ddof=1))
    if std <= _CONSTANT_RTOL * float(np.max(np.abs(r))) or std == 0.0:
        return math.nan
    return float(np.mean(r)) / std


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n: int, skew: float, kurtosis: float
) -> float:
    """Return P(true SR > sr_benchmark) given `n` observations; kurtosis is raw (normal = 3).

    PSR = Φ((SR - SR*) · sqrt(n - 1) / sqrt(1 - skew·SR + (kurtosis - 1)/4 · SR²)).
    NaN when n < 2, an input is NaN, or the variance term is not positive.
    """
    values = (sr, sr_benchmark, skew, kurtosis)
    if n < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denom <= 0.0:
        return math.nan
    z = (sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(denom)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """Return E[max SR] of `n_trials` skill-less trials whose Sharpe ratios have this variance.

    sqrt(V) · ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))), γ the Euler–Mascheroni constant.
    One trial (or zero variance) gives 0: a single draw is not selected from anything.
    NaN when the variance is NaN or negative.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not math.isfinite(var_sharpe) or var_sharpe < 0.0:
        return math.nan
    if n_trials == 1 or var_sharpe == 0.0:
        return 0.0
    g = float(np.euler_gamma)
    z = (1.0 - g) * stats.norm.ppf(1.0 - 1.0 / n_trials) + g * stats.norm.ppf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(var_sharpe) * float(z)


def deflated_sharpe_ratio(
    chosen_returns: np.ndarray,
    trial_sharpes: np.ndarray,
    *,
    n_trials: int | None = None,
    var_sharpe: float | None = None,
) -> DsrResult:
    """Return the DSR of the chosen trial against the trials run (all Sharpes per period).

    DSR = PSR(SR* = E[max SR](n_trials, var(trial_sharpes))) on `chosen_returns`.
    `n_trials` defaults to len(trial_sharpes) (every trial run, NaN Sharpes included); the
    variance uses the finite trial Sharpes only (ddof=1). Edge cases, never an exception for data:
    fewer than 2 finite trial Sharpes give var_sharpe NaN, so dsr is NaN unless n_trials == 1
    (then SR* = 0 and dsr = PSR(0)); zero variance gives SR* = 0; constant or too short chosen
    returns give sr NaN and dsr NaN. `var_sharpe` replaces the sample variance when given (e.g.
    a robust estimate, so that a few trials with a real edge do not inflate the null).
    """
    r = np.asarray(chosen_returns, dtype="float64").ravel()
    sharpes = np.asarray(trial_sharpes, dtype="float64").ravel()
    trials = int(sharpes.size if n_trials is None else n_trials)
    if trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {trials}")
    finite = sharpes[np.isfinite(sharpes)]
    var = float(np.var(finite, ddof=1)) if finite.size >= 2 else math.nan
    if var_sharpe is not None:
        var = float(var_sharpe)
    sr0 = 0.0 if trials == 1 else expected_max_sharpe(trials, var)
    sr = sharpe_per_period(r)
    skew, kurt = _moments(r) if math.isfinite(sr) else (math.nan, math.nan)
    dsr = probabilistic_sharpe_ratio(sr, sr0, int(r.size), skew, kurt)
    return DsrResult(
        dsr=dsr,
        sr=sr,
        sr0=sr0,
        n_trials=trials,
        var_sharpe=var,
        skew=skew,
        kurtosis=kurt,
        n=int(r.size),
    )


def robust_sharpe_variance(trial_sharpes: np.ndarray) -> float:
    """Return (1.4826 x MAD)^2 of the finite trial Sharpes: their variance, robust to outliers.

    For skill-less trials (normal Sharpe estimates) it estimates the same variance as the sample
    variance; trials with a genuine edge sit in the tail and barely move it.
    """
    x = np.asarray(trial_sharpes, dtype="float64").ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        return math.nan
    mad = float(np.median(np.abs(x - np.median(x))))
    return (1.4826 * mad) ** 2


def _moments(r: np.ndarray) -> tuple[float, float]:
    """Sample skewness and raw kurtosis (biased moments, normal = (0, 3))."""
    return float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))


def probability_of_backtest_overfitting(
    returns_matrix: np.ndarray, *, n_splits: int = 16, metric: str = "sharpe"
) -> PboResult:
    """Return the PBO of a T x N (periods x trials) return matrix by CSCV.

    Rows are cut into `n_splits` contiguous blocks (sizes differ by at most one row); each of
    the C(S, S/2) IS/OOS splits picks the best IS trial by `metric` ("sharpe": per-period
    Sharpe, ddof=1; "mean": mean return) and takes λ = logit(OOS rank / (N + 1)).
    PBO = share of splits with λ <= 0. The work is done on per-block sums, so a 2000 x 200
    matrix with S = 16 (12,870 splits) takes well under a second; memory is a few
    C(S, S/2) x N float arrays (about 20 MB each at that size).
    """
    x = _validated_matrix(returns_matrix, n_splits, metric)
    blocks = _block_aggregates(x, n_splits)
    is_sets, oos_index = _splits(n_splits)
    values = _combination_metric(blocks, is_sets, metric)
    is_values, oos_values = values, values[oos_index]
    chosen_oos = _pessimistic_winner_oos(is_values, oos_values)
    rank = _average_rank(oos_values, chosen_oos)
    n_trials = x.shape[1]
    omega = rank / (n_trials + 1.0)
    logits = np.log(omega / (1.0 - omega))
    chosen_is = np.max(is_values, axis=1)
    return PboResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_combinations=int(is_sets.shape[0]),
        n_splits=n_splits,
        n_trials=n_trials,
        is_metric=chosen_is,
        oos_metric=chosen_oos,
        degradation_slope=_ols_slope(chosen_is, chosen_oos),
        prob_oos_loss=float(np.mean(chosen_oos < 0.0)),
    )


def _validated_matrix(returns_matrix: np.ndarray, n_splits: int, metric: str) -> np.ndarray:
    # C order: every column then goes through the same arithmetic wherever it sits (column
    # permutations give bit-identical results; fancy indexing can hand over F-ordered arrays).
    x = np.ascontiguousarray(returns_matrix, dtype="float64")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"returns_matrix must be T x N with N >= 2 trials, got shape {x.shape}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    min_rows = 2 if metric == "sharpe" else 1  # a Sharpe needs two rows per block (ddof=1)
    if x.shape[0] < min_rows * n_splits:
        raise ValueError(
            f"{x.shape[0]} rows cannot make {n_splits} blocks of >= {min_rows} rows each"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("returns_matrix contains NaN or inf")
    return x


@dataclass(frozen=True)
class _Blocks:
    """Per-block aggregates of column-centred returns: x = r - mean_col(r)."""

    count: np.ndarray  # (S,) rows per block
    total: np.ndarray  # (S, N) sum of x
    total_sq: np.ndarray  # (S, N) sum of x²
    col_mean: np.ndarray  # (N,) the centring constant
    scale: np.ndarray  # (N,) max |x|, for the "numerically constant" test


def _block_aggregates(x: np.ndarray, n_splits: int) -> _Blocks:
    # Centring first keeps sum(x²) - sum(x)²/n well conditioned (variance is shift-invariant).
    col_mean = x.mean(axis=0)
    centred = x - col_mean
    starts = np.linspace(0, x.shape[0], n_splits + 1).round().astype(np.int64)
    return _Blocks(
        count=np.diff(starts).astype("float64"),
        total=np.add.reduceat(centred, starts[:-1], axis=0),
        total_sq=np.add.reduceat(centred * centred, starts[:-1], axis=0),
        col_mean=col_mean,
        scale=np.max(np.abs(centred), axis=0),
    )


def _splits(n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    """All S/2-block IS sets (lexicographic) and, for each, the row of its complement."""
    is_sets = np.array(list(combinations(range(n_splits), n_splits // 2)), dtype=np.int64)
    codes = (1 << is_sets).sum(axis=1)
    complement = ((1 << n_splits) - 1) ^ codes
    order = np.argsort(codes)
    oos_index = order[np.searchsorted(codes[order], complement)]
    return is_sets, oos_index


def _combination_metric(blocks: _Blocks, is_sets: np.ndarray, metric: str) -> np.ndarray:
    """Metric of every trial over the union of each row's blocks (combinations x trials)."""
    n = blocks.count[is_sets].sum(axis=1)[:, None]
    s = np.zeros((is_sets.shape[0], blocks.total.shape[1]))
    ss = np.zeros_like(s)
    for k in range(is_sets.shape[1]):  # elementwise adds: identical arithmetic for every column
        s += blocks.total[is_sets[:, k]]
        ss += blocks.total_sq[is_sets[:, k]]
    mean = s / n + blocks.col_mean
    if metric == "mean":
        return mean
    var = np.maximum(ss - s * s / n, 0.0) / (n - 1.0)
    std = np.sqrt(var)
    defined = std > _BLOCK_CONSTANT_RTOL * blocks.scale
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, mean / std, -np.inf)  # undefined ranks below everything


def _pessimistic_winner_oos(is_values: np.ndarray, oos_values: np.ndarray) -> np.ndarray:
    """OOS metric of the IS winner; among IS ties, the worst OOS (column-order free)."""
    tied = is_values == np.max(is_values, axis=1, keepdims=True)
    return np.min(np.where(tied, oos_values, np.inf), axis=1)


def _average_rank(values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Ascending average rank (1..N) of `chosen` within each row of `values`."""
    below = np.sum(values < chosen[:, None], axis=1)
    equal = np.sum(values == chosen[:, None], axis=1)
    return below + (equal + 1.0) / 2.0


def _ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if np.count_nonzero(ok) < 2:
        return math.nan
    dx = x[ok] - x[ok].mean()
    sxx = float(np.dot(dx, dx))
    return float(np.dot(dx, y[ok] - y[ok].mean()) / sxx) if sxx > 0.0 else math.nan


def overfitting_verdict(dsr: DsrResult | None, pbo: PboResult | None) -> str:
    """Return a plain-language verdict: PBO > 0.5 likely overfit, DSR < 0.95 not significant."""
    parts = [
        _pbo_sentence(pbo) if pbo is not None else "",
        _dsr_sentence(dsr) if dsr is not None else "",
    ]
    text = " ".join(p for p in parts if p)
    return text or "No overfitting statistics were computed."


def _pbo_sentence(pbo: PboResult) -> str:
    if not math.isfinite(pbo.pbo):
        return "PBO undefined."
    if pbo.pbo > PBO_OVERFIT:
        return (
            f"PBO {pbo.pbo:.2f}: the best in-sample configuration ranks below the median out of "
            "sample more often than not — likely overfit."
        )
    return (
        f"PBO {pbo.pbo:.2f}: the best in-sample configuration usually stays above the median "
        f"out of sample (threshold {PBO_OVERFIT:.2f}) — no sign of overfitting by CSCV."
    )


def _dsr_sentence(dsr: DsrResult) -> str:
    if not math.isfinite(dsr.dsr):
        return "DSR undefined (constant or too few returns, or too few trials to measure spread)."
    head = (
        f"DSR {dsr.dsr:.2f} (Sharpe {dsr.sr:.4f}/period against {dsr.sr0:.4f} expected from the "
        f"best of {dsr.n_trials} skill-less trials)"
    )
    if dsr.dsr < DSR_SIGNIFICANT:
        return f"{head}: not significant at {DSR_SIGNIFICANT:.2f} — luck could explain it."
    return f"{head}: significant at {DSR_SIGNIFICANT:.2f} after deflating for the trials run."
