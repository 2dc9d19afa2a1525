"""The statistics that make rows comparable: a one-sided Welch t-test between two rows, the tolerance a re-run on
other hardware must meet, and median [min, max] summaries. (Mean, std and the 95 % interval are in results.py.)"""

from __future__ import annotations

import math
import statistics

from scipy import stats

VERIFY_CONFIDENCE = 0.99  # a verify on other hardware flags an honest result about 1 time in 100
NO_SPREAD_FRACTION = 0.10  # tolerance when the result has no spread to derive one from (n = 1, or all seeds equal)


def welch_p_better(a: list[float], b: list[float], direction: str) -> float | None:
    """One-sided Welch t-test p-value for "a is better than b" (lower when direction is 'min'); None when either
    side has fewer than two values or neither side varies (the test is undefined there)."""
    if len(a) < 2 or len(b) < 2 or (statistics.stdev(a) == 0 and statistics.stdev(b) == 0):
        return None
    alternative = "less" if direction == "min" else "greater"
    p = float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)
    return p if math.isfinite(p) else None


def verify_tolerance(recorded: list[float], rerun_count: int, same_seeds: bool = False) -> tuple[float, str]:
    """How far a re-run's mean may sit from the recorded mean when the hardware or software differs, and why.

    Under the hypothesis that the re-run draws its seeds from the same distribution as the recorded ones, the
    difference of the two means has standard error s·√(1/n + 1/m) (s: the recorded sample std over n seeds, m: the
    re-run's seeds), and |difference| / that error follows Student's t with n − 1 degrees of freedom. The tolerance is
    its two-sided 99 % quantile: an honest result fails about once in a hundred verifies, a real shift of a few
    standard errors fails nearly always. With ``same_seeds`` the re-run's m seeds are compared with the recorded mean
    over those same m seeds: each mean has standard error σ/√m, so the difference s·√(2/m) (the value for independent
    runs; re-running the same seeds can only correlate the two, which narrows it); s still comes from all n recorded
    seeds. Without a spread (n = 1, or all seeds equal) there is nothing to derive a tolerance from, and 10 % of the
    recorded mean is used instead: a coarse check, and the output says so.
    """
    n, m = len(recorded), rerun_count
    mean = statistics.fmean(recorded)
    std = statistics.stdev(recorded) if n >= 2 else 0.0
    if n < 2 or std == 0:
        tol = NO_SPREAD_FRACTION * abs(mean)
        return tol, (f"no recorded spread (n = {n}{', all seeds equal' if n >= 2 else ''}): "
                     f"{NO_SPREAD_FRACTION:.0%} of the recorded mean = {tol:.4g}")  # fmt: skip
    t = float(stats.t.ppf(0.5 + VERIFY_CONFIDENCE / 2, n - 1))
    if same_seeds:
        tol = t * std * math.sqrt(2 / m)
        seeds = f"{m} seed{'s' * (m != 1)}"
        return tol, (f"{VERIFY_CONFIDENCE:.0%} two-sided Student-t bound on a difference of means over the same "
                     f"{seeds}: t({n - 1} df) {t:.3f} × s {std:.4g} (all {n} recorded seeds) × √(2/{m}) = "
                     f"{tol:.4g}")  # fmt: skip
    tol = t * std * math.sqrt(1 / n + 1 / m)
    why = (f"{VERIFY_CONFIDENCE:.0%} two-sided Student-t bound on a difference of means: t({n - 1} df) {t:.3f} × "
           f"s {std:.4g} × √(1/{n} + 1/{m}) = {tol:.4g}")  # fmt: skip
    return tol, why


def median_range(values: list[float]) -> tuple[float, float, float] | None:
    """(median, min, max), or None for no values."""
    return (statistics.median(values), min(values), max(values)) if values else None
