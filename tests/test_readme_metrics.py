"""The README documents the run-log format analysis scripts rely on: keep it complete."""

from pathlib import Path

from rlscale.runlog import METRIC_FIELDS


def test_readme_documents_every_metric_field():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    undocumented = [f for f in METRIC_FIELDS if f"`{f}`" not in readme]
    assert not undocumented, f"add these metrics.jsonl fields to the README's table: {undocumented}"


def test_readme_lists_every_recipe_variant():
    from typing import get_args

    from rlscale.algos import settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    axes = (settings.LossConfig, settings.AdvantageConfig, settings.AggregationConfig, settings.FilterConfig,
            settings.EntropyControlConfig)
    names = [m.model_fields["name"].default for axis in axes for m in get_args(get_args(axis)[0])]
    missing = [n for n in names if f"`{n}`" not in readme]
    assert not missing, f"add these recipe variants to the README's Recipes table: {missing}"
