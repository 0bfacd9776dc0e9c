"""Prometheus metrics for the node."""
