"""Does the zoo's Chinchilla law predict models it was not fitted to? (docs/study.md, part 0b)

Reads a pre-training sweep with several token budgets per size (configs/sweeps/zoo_laws.yaml)
and fits L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Approach 3) to each
model's final loss, as `rlscale analyze` does, twice over:

- extrapolation: fitted without the two largest-compute models, it predicts their loss;
- leave-one-out: each model's loss predicted by the law fitted to all the others.

Each prediction is scored against persistence, the same size's loss at its next-smaller
budget (what one would guess without a law), where that size has one.

    .venv/bin/python scripts/zoo_law_holdout.py runs/study/zoo_laws
"""

import argparse

import numpy as np
import pandas as pd

from rlscale.analysis import FitRefused, fit_chinchilla, load_zoo
from rlscale.analysis.analyze import zoo_loss


def predict_left_out(finals: pd.DataFrame, loss: str, left_out: pd.Series) -> pd.DataFrame:
    fitted = finals[~left_out]
    fit = fit_chinchilla(fitted["n_params"], fitted["tokens"], fitted[loss], n_boot=0)
    rows = finals[left_out].copy()
    rows["predicted"] = fit.predict(rows[["n_params", "tokens"]].to_numpy())
    return rows


def persistence(finals: pd.DataFrame, row, loss: str) -> float:
    """The same size's final loss at its next-smaller token budget (NaN if none)."""
    smaller = finals[(finals["n_params"] == row["n_params"]) & (finals["tokens"] < row["tokens"])]
    return float(smaller.sort_values("tokens")[loss].iloc[-1]) if len(smaller) else float("nan")


def table(rows: pd.DataFrame, finals: pd.DataFrame, loss: str) -> str:
    lines = ["| model | N | D | measured | predicted | error | persistence error |", "|---|---|---|---|---|---|---|"]
    for _, r in rows.iterrows():
        err, pers = r["predicted"] - r[loss], persistence(finals, r, loss) - r[loss]
        lines.append(f"| {r['model']} | {r['n_params']:,.0f} | {r['tokens']:.3g} | {r[loss]:.4f} | "
                     f"{r['predicted']:.4f} | {err:+.4f} ({err / r[loss]:+.1%}) | "
                     + ("-" if np.isnan(pers) else f"{pers:+.4f}") + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", nargs="+", help="a pre-training sweep directory or zoo checkpoints")
    ap.add_argument("--extrapolate", type=int, default=2, help="how many of the largest-compute models to leave out")
    args = ap.parse_args()
    zoo = load_zoo(args.zoo)
    loss = zoo_loss(zoo)
    finals = zoo[zoo["final"]].sort_values(["n_params", "tokens"]).reset_index(drop=True)
    print(f"{len(finals)} models, loss {loss}\n")
    largest = finals["flops"].rank(ascending=False, method="first") <= args.extrapolate
    print(f"Extrapolation: fitted to the {len(finals) - args.extrapolate} others, the {args.extrapolate} "
          "largest-compute models predicted\n")
    try:
        print(table(predict_left_out(finals, loss, largest), finals, loss))
    except FitRefused as e:
        print(f"refused: {e}")
    print("\nLeave-one-out: each model predicted by the law fitted to all the others\n")
    rows = []
    for i in range(len(finals)):
        try:
            rows.append(predict_left_out(finals, loss, finals.index == i))
        except FitRefused as e:
            print(f"{finals['model'][i]}: refused: {e}")
    if rows:
        loo = pd.concat(rows)
        print(table(loo, finals, loss))
        rel = (loo["predicted"] - loo[loss]).abs() / loo[loss]
        print(f"\nmedian |error| {rel.median():.1%} of the loss, largest {rel.max():.1%}")


if __name__ == "__main__":
    main()
