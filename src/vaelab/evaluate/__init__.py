"""Evaluation: metrics, figures and experiments on trained variants."""
