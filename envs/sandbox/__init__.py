"""Sandbox for generated code: one process per sample, resource limits, no network, read-only host."""
