"""Bootstrap intervals and the paired bootstrap on cases where the answer is known."""

import pytest

from slm.evaluation.stats import bootstrap_mean, bootstrap_ratio, paired_bootstrap


def test_mean_and_interval_contain_value():
    values = [0.0, 1.0] * 50
    e = bootstrap_mean(values, resamples=500, seed=1)
    assert e.value == 0.5 and e.n == 100
    assert e.low < 0.5 < e.high
    assert 0.35 < e.low and e.high < 0.65


def test_constant_values_give_a_point_interval():
    e = bootstrap_mean([0.7] * 20, resamples=200)
    assert (e.value, e.low, e.high) == pytest.approx((0.7, 0.7, 0.7))


def test_ratio_ignores_questions_with_zero_denominator():
    e = bootstrap_ratio([1, 0, 2, 0], [1, 0, 4, 0], resamples=200)
    assert e.value == pytest.approx(3 / 5)
    assert e.n == 2


def test_undefined_metric():
    e = bootstrap_ratio([0, 0], [0, 0])
    assert e.value is None and e.low is None and e.n == 0


def test_seed_makes_intervals_reproducible():
    values = [i % 3 / 2 for i in range(60)]
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)


def test_paired_difference_real_when_one_variant_always_better():
    a = [1.0] * 40
    b = [0.0] * 30 + [1.0] * 10
    d = paired_bootstrap("f1", "new", "old", a, None, b, None, resamples=500)
    assert d.diff == pytest.approx(0.75)
    assert d.low > 0 and d.verdict == "real"
    assert d.p_value < 0.01


def test_paired_difference_noise_when_equal_on_average():
    a = [1.0, 0.0] * 20
    b = [0.0, 1.0] * 20
    d = paired_bootstrap("f1", "x", "y", a, None, b, None, resamples=500)
    assert d.diff == 0.0
    assert d.low < 0 < d.high and d.verdict == "noise"


def test_paired_identical_variants_are_noise_with_p_one():
    a = [0.3, 0.9, 0.1, 0.5]
    d = paired_bootstrap("f1", "x", "y", a, None, a, None, resamples=100)
    assert d.diff == 0.0 and d.verdict == "noise" and d.p_value == 1.0


def test_paired_needs_aligned_questions():
    with pytest.raises(ValueError):
        paired_bootstrap("f1", "x", "y", [1, 0], None, [1], None)


def test_paired_undefined_side():
    d = paired_bootstrap("p", "x", "y", [0, 0], [0, 0], [1, 1], [1, 1])
    assert d.diff is None and d.verdict == "n/a"
