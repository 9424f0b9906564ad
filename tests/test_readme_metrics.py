"""The README documents the run-log format analysis scripts rely on: keep it complete."""

from pathlib import Path

from rlscale.runlog import METRIC_FIELDS


def test_readme_documents_every_metric_field():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    undocumented = [f for f in METRIC_FIELDS if f"`{f}`" not in readme]
    assert not undocumented, f"add these metrics.jsonl fields to the README's table: {undocumented}"
