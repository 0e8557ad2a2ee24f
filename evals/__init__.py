"""Evaluation sets, loader and runner for the retrieval-QA assistant."""
