"""Benchmarks of ingest and query (`make bench` / `python -m bench`); see bench/__main__.py."""
