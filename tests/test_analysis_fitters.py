"""Each fitter gives back the law it was fed (with realistic noise and point density) and
refuses the cases the data cannot support."""

import numpy as np
import pytest

from rlscale.analysis import (FitRefused, capability_density, compare_fits, compute_optimal, fit_across_sizes,
                              fit_chinchilla, fit_entropy_reward, fit_loss_to_accuracy, fit_power_law, fit_sigmoid)
from rlscale.analysis.density import accuracy_curve
from rlscale.analysis.pretrain_laws import chinchilla_curve
from rlscale.analysis.sigmoid import sigmoid_curve

BOOT = 60  # enough for the intervals to mean something, few enough to keep the suite fast


def eval_noise(rng, p, n_samples=800):
    """An accuracy measured on 200 problems x 4 samples: binomial noise (sd ~0.017 at p=0.5)."""
    return rng.binomial(n_samples, np.clip(p, 0, 1)) / n_samples


def sigmoid_data(seed, A=0.72, B=1.4, c_mid=3e13, r0=0.12, lo=3e12, hi=3e14, n=20):
    rng = np.random.default_rng(seed)
    C = np.geomspace(lo, hi, n)  # from C_mid/10 to 10 x C_mid: the data cover past the midpoint
    return C, eval_noise(rng, sigmoid_curve([A, B, c_mid], C, r0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigmoid_recovers_parameters(seed):
    C, R = sigmoid_data(seed)
    # step 0 (C = 0) is a data point that anchors R0, which is fitted with the rest
    fit = fit_sigmoid(np.r_[0.0, C], np.r_[0.12, R], n_problems=800, n_boot=BOOT, seed=seed)
    assert fit.names == ["A", "B", "C_mid", "R0"] and fit.params["R0"] == pytest.approx(0.12, abs=0.03)
    assert fit.fixed["noise"] == "binomial" and fit.resampled == "parametric (binomial noise)"
    assert abs(fit.params["A"] - 0.72) <= 0.02
    assert fit.params["B"] == pytest.approx(1.4, rel=0.3)
    assert fit.params["C_mid"] == pytest.approx(3e13, rel=0.3)
    lo, hi = fit.ci()["A"]
    assert lo < fit.params["A"] < hi and hi - lo < 0.15


def test_sigmoid_free_r0_and_robust_to_an_outlier():
    C, R = sigmoid_data(3)
    R[12] = 0.0  # a crashed evaluation logged as zero accuracy
    fit = fit_sigmoid(C, R, n_boot=0)
    assert fit.names == ["A", "B", "C_mid", "R0"]
    assert abs(fit.params["A"] - 0.72) <= 0.03


def test_sigmoid_drop_early_and_bootstrap_over_runs():
    Cs, Rs, groups = [], [], []
    for seed in range(4):
        C, R = sigmoid_data(10 + seed)
        Cs.append(C), Rs.append(R), groups.append(np.full(len(C), seed))
    C, R, g = np.concatenate(Cs), np.concatenate(Rs), np.concatenate(groups)
    fit = fit_sigmoid(C, R, r0=0.12, groups=g, drop_below=5e12, n_boot=BOOT)
    assert fit.n_points == int((C >= 5e12).sum())
    assert fit.resampled.startswith("runs")
    assert abs(fit.params["A"] - 0.72) <= 0.02


def test_sigmoid_refuses_ill_posed_data():
    rng = np.random.default_rng(0)
    C = np.geomspace(1e12, 1e14, 15)
    with pytest.raises(FitRefused, match="too few"):
        fit_sigmoid(C[:4], eval_noise(rng, np.full(4, 0.3)))
    with pytest.raises(FitRefused, match="flat"):
        fit_sigmoid(C, eval_noise(rng, np.full(15, 0.3)), r0=0.3)
    # Data end well before C_mid (still in the early, convex phase): the asymptote is not
    # determined, at the point estimate or across bootstrap resamples (refused), or only
    # from below (its interval runs into the bound A = 1 and is reported as bounded).
    for seed in range(6):
        rng = np.random.default_rng(seed)
        early = eval_noise(rng, sigmoid_curve([0.7, 1.5, 3e14], C, 0.1))
        try:
            fit = fit_sigmoid(C, early, r0=0.1, n_boot=BOOT)
        except FitRefused as e:
            assert "bound" in str(e)
            continue
        assert fit.bounded()["A"] == "upper" and fit.ci()["A"][1] == pytest.approx(1.0, abs=1e-3)


def test_power_law_recovers_and_refuses():
    rng = np.random.default_rng(0)
    C = np.geomspace(1e10, 1e15, 30)
    L = (0.8 + 40 * C ** -0.15) * np.exp(rng.normal(0, 0.005, 30))
    fit = fit_power_law(C, L, n_boot=BOOT)
    assert fit.params["alpha"] == pytest.approx(0.15, rel=0.25)
    assert fit.params["E"] == pytest.approx(0.8, abs=0.15)
    lo, hi = fit.ci()["E"]
    assert lo <= 0.8 <= hi
    with pytest.raises(FitRefused, match="flat"):
        fit_power_law(C, 1.0 + rng.normal(0, 0.01, 30))
    with pytest.raises(FitRefused, match="too few"):
        fit_power_law(C[:4], L[:4])


def test_entropy_reward_law_recovers_and_refuses():
    rng = np.random.default_rng(0)
    H = np.linspace(1.2, 0.1, 200)
    R = eval_noise(rng, -0.25 * np.exp(H) + 0.95, 256)  # 32 prompts x 8 samples per step
    fit = fit_entropy_reward(H, R, n_boot=BOOT)
    assert fit.params["a"] == pytest.approx(0.25, abs=0.02)
    assert fit.params["b"] == pytest.approx(0.95, abs=0.03)
    assert fit.derived["R(H=0)"][0] == pytest.approx(0.70, abs=0.02)
    with pytest.raises(FitRefused, match="does not fall"):  # reward rising with entropy: a < 0
        fit_entropy_reward(H, 0.2 + 0.1 * np.exp(H) + rng.normal(0, 0.01, 200))
    with pytest.raises(FitRefused, match="never changed"):
        fit_entropy_reward(np.full(50, 0.5), R[:50])


SIZES = np.array([1.4e5, 8.2e5, 2.6e6, 6.1e6])
TRUE_CHIN = (0.45, 60.0, 400.0, 0.35, 0.4)


def zoo_points(seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    N = np.repeat(sizes, 40)
    D = np.tile(np.geomspace(1e6, 1.2e7, 40), len(sizes))
    L = chinchilla_curve(TRUE_CHIN, np.stack([N, D], 1)) * np.exp(rng.normal(0, 0.01, N.size))
    return N, D, L


def test_chinchilla_recovers_and_allocates_compute_optimally():
    fit = fit_chinchilla(*zoo_points(), n_boot=30)
    assert fit.params["alpha"] == pytest.approx(0.35, abs=0.05)
    assert fit.params["beta"] == pytest.approx(0.4, abs=0.05)
    assert fit.params["E"] == pytest.approx(0.45, abs=0.15)
    # N_opt must minimise the fitted loss along the iso-compute line D = C / (6N).
    C = 1e16
    row = compute_optimal(fit, [C])[0]
    grid = np.geomspace(1e4, 1e10, 4000)
    losses = fit.predict(np.stack([grid, C / (6 * grid)], 1))
    assert row["N_opt"][0] == pytest.approx(grid[np.argmin(losses)], rel=0.01)
    assert row["N_opt"][1] <= row["N_opt"][0] <= row["N_opt"][2]


def test_chinchilla_refuses_two_sizes():
    with pytest.raises(FitRefused, match="at least 3 sizes"):
        fit_chinchilla(*zoo_points(sizes=SIZES[:2]), n_boot=0)


def test_across_sizes_recovers_k_of_n_and_refuses():
    rng = np.random.default_rng(0)
    k_max, n0 = 0.3, 1e6
    sizes = np.array([1e5, 5e5, 2e6, 8e6])
    e0 = {1e5: -0.3, 5e5: 2.0, 2e6: 5.0, 8e6: 6.5}  # intercepts at C = 1 FLOP: errors 0.1-0.6
    N, C, acc = [], [], []
    for n in sizes:
        c = np.geomspace(1e12, 1e14, 12)
        err = np.exp(-k_max * n / (n + n0) * np.log(c) + e0[n])
        N += [n] * 12
        C += list(c)
        acc += list(1 - err * np.exp(rng.normal(0, 0.02, 12)))
    fit = fit_across_sizes(N, C, acc, n_boot=BOOT)
    assert fit.params["k_max"] == pytest.approx(k_max, rel=0.15)
    assert fit.params["N0"] == pytest.approx(n0, rel=0.5)
    assert fit.params["E0[2e+06]"] == pytest.approx(5.0, abs=0.5)
    for n in sizes:  # the slope per size, k(N), with its bootstrap interval holding the truth
        k, lo, hi = fit.derived[f"k[{n:.4g}]"]
        assert lo <= k_max * n / (n + n0) <= hi and k == pytest.approx(k_max * n / (n + n0), rel=0.15)
    from rlscale.analysis.across_sizes import slopes_per_size

    slopes = slopes_per_size(N, C, acc, groups=np.repeat(np.arange(len(sizes)), 12), n_boot=BOOT)
    for n in sizes:  # each size's slope alone (bootstrap over points here: one run per size)
        k, lo, hi = slopes[n]
        assert k == pytest.approx(k_max * n / (n + n0), abs=0.01) and lo <= k <= hi
    two = np.isin(N, sizes[:2])
    with pytest.raises(FitRefused, match="at least 3 sizes"):
        fit_across_sizes(np.array(N)[two], np.array(C)[two], np.array(acc)[two])


def test_capability_density_reads_back_a_zoo_size():
    chin = fit_chinchilla(*zoo_points(), n_boot=20)
    tokens = 1.2e7
    losses = chinchilla_curve(TRUE_CHIN, np.stack([SIZES, np.full(4, tokens)], 1))
    acc = accuracy_curve([4.0, 1.4], losses)
    law = fit_loss_to_accuracy(losses, acc, n_boot=20)
    assert law.params["gamma"] == pytest.approx(4.0, rel=0.05)
    # A model of 1e6 parameters scoring what the zoo's third size scores has density ~2.6.
    out = capability_density(chin, law, float(acc[2]), 1e6, tokens)
    assert out["n_eff"][0] == pytest.approx(SIZES[2], rel=0.15)
    assert out["density"][0] == pytest.approx(SIZES[2] / 1e6, rel=0.15)
    with pytest.raises(FitRefused, match="cannot be inverted"):
        capability_density(chin, law, 1.0, 1e6, tokens)


def test_loss_to_accuracy_refuses_too_few_models():
    with pytest.raises(FitRefused, match="too few"):
        fit_loss_to_accuracy([2.0, 1.5], [0.1, 0.4])


def test_compare_fits_checks_a_before_b():
    same_a = {name: fit_sigmoid(*sigmoid_data(s, B=b), r0=0.12, n_boot=BOOT, seed=s)
              for name, s, b in (("slow", 0, 0.8), ("fast", 1, 3.0))}
    (row,) = compare_fits(same_a)
    assert "A within noise" in row["A"] and "B differs" in row["B"] and "fast is more" in row["B"]
    diff_a = {name: fit_sigmoid(*sigmoid_data(s, A=a), r0=0.12, n_boot=BOOT)
              for name, s, a in (("low", 0, 0.5), ("high", 1, 0.8))}
    (row,) = compare_fits(diff_a)
    assert "A differs" in row["A"] and "high has the higher ceiling" in row["A"]
    assert "not compared" in row["B"]
