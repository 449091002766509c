"""Experiment tracking: the MLflow hook and where runs are stored."""
