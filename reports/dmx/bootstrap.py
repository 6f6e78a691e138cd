#!/usr/bin/env python3
"""Paired bootstrap confidence intervals for perplexity differences between two searches
(reports/dmx/summarize.py uses it; tests/quant/test_bootstrap.py checks it).

The data of one comparison are per-window mean NLLs (nats per predicted token) of method A and of
method B on the same test windows, for each search seed: a[s][w], b[s][w]. Perplexity is
exp(mean NLL over the windows) (every window has the same token count), averaged over the seeds.
One bootstrap replicate draws seeds with replacement and, for each drawn seed, windows with
replacement; A and B use the same draws (paired), and the replicate's statistic is
ppl_A - ppl_B. The interval is the percentile interval of the replicates. A difference is
established only where the interval excludes zero."""
import math
import random


def perplexity_difference(a, b, seeds, windows):
    """ppl_A - ppl_B over the given seed indices and, per seed, window index lists."""
    pa = pb = 0.0
    for s, ws in zip(seeds, windows):
        pa += math.exp(sum(a[s][w] for w in ws) / len(ws))
        pb += math.exp(sum(b[s][w] for w in ws) / len(ws))
    return (pa - pb) / len(seeds)


def quantile(sorted_values, q):
    """The q-quantile of sorted values by the inverted empirical distribution (type 1): the
    smallest value v with at least a fraction q of the values <= v."""
    n = len(sorted_values)
    k = max(0, math.ceil(q * n) - 1)
    return sorted_values[min(k, n - 1)]


def paired_bootstrap(a, b, resamples=4000, level=0.95, seed=0):
    """Returns (observed difference, low, high) of ppl_A - ppl_B (see the module docstring)."""
    if len(a) != len(b) or not a:
        raise ValueError("a and b need the same, non-zero number of seeds")
    n_seeds, n_windows = len(a), len(a[0])
    if any(len(r) != n_windows for r in a + b) or n_windows == 0:
        raise ValueError("every seed needs the same, non-zero number of windows in a and b")
    rng = random.Random(seed)
    all_windows = list(range(n_windows))
    observed = perplexity_difference(a, b, list(range(n_seeds)), [all_windows] * n_seeds)
    reps = []
    for _ in range(resamples):
        seeds = [rng.randrange(n_seeds) for _ in range(n_seeds)]
        windows = [[rng.randrange(n_windows) for _ in range(n_windows)] for _ in seeds]
        reps.append(perplexity_difference(a, b, seeds, windows))
    reps.sort()
    alpha = (1.0 - level) / 2
    return observed, quantile(reps, alpha), quantile(reps, 1.0 - alpha)


def verdict(low, high, lower_is_better=True):
    """'better' / 'worse' where the interval of A - B excludes zero, else 'not distinguishable'."""
    if high < 0:
        return "better" if lower_is_better else "worse"
    if low > 0:
        return "worse" if lower_is_better else "better"
    return "not distinguishable"
