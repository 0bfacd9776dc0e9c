"""Watermark schemes: `multi_factor_v2` (and `multi_factor_v1`) evidence, embedding and
verification."""
