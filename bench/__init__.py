"""Orchestration: CLI, trials, Ray Tune, MLflow, reports."""
