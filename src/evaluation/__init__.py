"""Evaluation: play trained policies against the base model, paired statistics, the report."""
