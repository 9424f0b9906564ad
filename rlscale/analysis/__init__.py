"""The analysis layer: run logs in, scaling laws out. Reads run directories and zoo
checkpoints only; never imports the learner, the rollout workers or the orchestrator.

    from rlscale.analysis import load_runs, fit_sigmoid
    runs = load_runs(["runs/quickstart-20250101-120000"])
    run = runs[runs.val_mean_at_k.notna()]
    fit = fit_sigmoid(run.cumulative_flops, run.val_mean_at_k)
    fit.params, fit.ci()

See docs/analysis.md for the laws and their references.
"""

from .across_sizes import fit_across_sizes
from .compare import compare_fits, paired_difference
from .extrapolation import extrapolation_check, setting_extrapolation
from .density import capability_density, fit_loss_to_accuracy
from .fitcore import Fit, FitRefused
from .loading import RunDirError, load_run, load_runs, load_zoo
from .pretrain_laws import compute_optimal, fit_chinchilla, loss_frontier
from .rl_laws import fit_entropy_reward, fit_power_law
from .sigmoid import fit_sigmoid, sigmoid_curve

__all__ = ["Fit", "FitRefused", "RunDirError", "capability_density", "compare_fits", "compute_optimal",
           "extrapolation_check", "setting_extrapolation", "fit_across_sizes", "fit_chinchilla", "fit_entropy_reward",
           "fit_loss_to_accuracy", "fit_power_law", "fit_sigmoid", "load_run", "load_runs", "load_zoo",
           "loss_frontier", "paired_difference", "sigmoid_curve"]
