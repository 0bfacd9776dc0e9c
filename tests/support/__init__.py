"""Helpers for the tests: builders, fixtures' machinery, real processes and trained models."""
