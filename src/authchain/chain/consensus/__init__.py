"""Consensus: block store protocol, engine, proposer, pool, fork choice, validators."""
