#!/usr/bin/env python3
"""reports/dmx/bootstrap.py against hand computations on tiny cases (ctest quant_bootstrap)."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "reports", "dmx"))
import bootstrap  # noqa: E402


class Bootstrap(unittest.TestCase):
    def test_two_windows_one_seed_matches_the_enumerated_distribution(self):
        # A: NLL 1 and 2, B: 1 and 1. Resampling two windows gives A's mean 1, 1.5, 2 with
        # probabilities 1/4, 1/2, 1/4, so ppl_A - ppl_B is 0, e^1.5 - e or e^2 - e; the 95%
        # percentile interval is [0, e^2 - e] and the observed value e^1.5 - e.
        a, b = [[1.0, 2.0]], [[1.0, 1.0]]
        obs, lo, hi = bootstrap.paired_bootstrap(a, b, resamples=20000, seed=1)
        e = math.e
        self.assertAlmostEqual(obs, e ** 1.5 - e, places=12)
        self.assertEqual(lo, 0.0)
        self.assertAlmostEqual(hi, e ** 2 - e, places=12)
        self.assertEqual(bootstrap.verdict(lo, hi), "not distinguishable")

    def test_a_constant_difference_gives_a_point_interval(self):
        # Every window 0.1 nats lower in A for both seeds: every replicate is the same.
        a = [[1.0, 1.2, 0.9], [1.1, 1.0, 1.3]]
        b = [[x + 0.1 for x in row] for row in a]
        obs, lo, hi = bootstrap.paired_bootstrap(a, b, resamples=500, seed=2)
        self.assertLess(hi, 0.0)
        self.assertEqual(bootstrap.verdict(lo, hi), "better")
        # The replicates only move the window mix: all lie within the per-window extremes.
        self.assertGreaterEqual(lo, min(math.exp(x) - math.exp(x + 0.1) for r in a for x in r))
        self.assertLessEqual(hi, max(math.exp(x) - math.exp(x + 0.1) for r in a for x in r))

    def test_quantile_is_the_inverted_empirical_distribution(self):
        v = [1.0, 2.0, 3.0, 4.0]
        self.assertEqual(bootstrap.quantile(v, 0.025), 1.0)
        self.assertEqual(bootstrap.quantile(v, 0.25), 1.0)
        self.assertEqual(bootstrap.quantile(v, 0.26), 2.0)
        self.assertEqual(bootstrap.quantile(v, 0.975), 4.0)

    def test_seeds_are_resampled_too(self):
        # Two seeds whose differences have opposite signs: the interval must straddle zero even
        # though each seed alone is a constant difference.
        a = [[1.0, 1.0], [2.0, 2.0]]
        b = [[1.5, 1.5], [1.5, 1.5]]
        obs, lo, hi = bootstrap.paired_bootstrap(a, b, resamples=4000, seed=3)
        self.assertAlmostEqual(obs, (math.e + math.e ** 2) / 2 - math.exp(1.5), places=12)
        self.assertAlmostEqual(lo, math.e - math.exp(1.5), places=12)
        self.assertAlmostEqual(hi, math.e ** 2 - math.exp(1.5), places=12)

    def test_bad_shapes_are_refused(self):
        with self.assertRaises(ValueError):
            bootstrap.paired_bootstrap([[1.0]], [[1.0], [2.0]])
        with self.assertRaises(ValueError):
            bootstrap.paired_bootstrap([[1.0, 2.0]], [[1.0]])


if __name__ == "__main__":
    unittest.main()
