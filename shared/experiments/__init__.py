"""Experiments: configuration, variant expansion, execution with promptflow, evaluation and reports."""
