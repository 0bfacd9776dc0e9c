"""`ChainMetrics` (seed `metrics/prometheus.rs`): the node's Prometheus metrics.

Each node owns a `CollectorRegistry`, so several nodes (or tests) in one process never share
counters. The seed's names are kept: `consensus_block_validation_seconds`,
`consensus_ml_auth_seconds`, `consensus_ml_cache_hit_ratio`, and
`consensus_blocks_rejected_ml` (a counter, so it is exposed as `..._total`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


V_AUTH_REASONS = frozenset(
    {
        "artefact_hash_mismatch", "artefact_not_found", "bad_config",
        "carries_registered_watermark", "evidence_below_min_strength", "evidence_claim_mismatch",
        "evidence_hash_mismatch", "evidence_model_mismatch", "evidence_not_found",
        "feat_dist_above_tau_feat", "feat_p_above_floor", "hash_mismatch",
        "logit_band_above_floor", "logit_stat_outside_band", "owner_mismatch", "scheme_mismatch",
        "shape_mismatch", "sketch_mismatch", "trigger_acc_below_tau_input", "trigger_p_above_floor",
        "verifier_error", "ml_auth_failed", "files_unavailable",
    }
)  # fmt: skip
"""The verifier's reason codes: the only ML-side strings a metric label may take."""


def metric_reason(reason: str, known: frozenset[str] = frozenset()) -> str:
    """`reason` as a label value from a fixed set: itself if it is one of `known` or a verifier
    code; for a `;`-joined verifier answer, its first code; else `other`. (A reason string
    comes from outside, and every new label value is a new time series.)"""
    if reason in known or reason in V_AUTH_REASONS:
        return reason
    first = reason.split(";", 1)[0]
    return first if first in V_AUTH_REASONS else "other"


class ChainMetrics:
    """All metrics of one node, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.block_validation_seconds = Histogram(
            "consensus_block_validation_seconds",
            "Time to validate a block (V_base + V_auth)",
            registry=r,
            buckets=_SECONDS,
        )
        self.ml_auth_seconds = Histogram(
            "consensus_ml_auth_seconds",
            "Time spent in V_auth for one block or proposal",
            registry=r,
            buckets=_SECONDS,
        )
        self.ml_cache_hit_ratio = Gauge(
            "consensus_ml_cache_hit_ratio",
            "Share of V_auth lookups answered by the cache",
            registry=r,
        )
        self.blocks_rejected_ml = Counter(
            "consensus_blocks_rejected_ml",
            "Blocks rejected because an artefact failed V_auth",
            registry=r,
        )
        self.blocks_rejected = Counter(
            "consensus_blocks_rejected", "Blocks rejected, by reason", ["reason"], registry=r
        )
        self.blocks_retried = Counter(
            "consensus_blocks_deferred",
            "Block imports deferred because the ML service was unavailable",
            registry=r,
        )
        self.chain_height = Gauge("chain_height", "Height of the canonical tip", registry=r)
        self.pool_size = Gauge("txpool_size", "Transactions waiting in the pool", registry=r)
        self.txs_committed = Counter(
            "chain_txs_committed", "Transactions committed in canonical blocks", registry=r
        )
        self.txs_rejected = Counter(
            "txpool_txs_rejected",
            "Transactions dropped or refused, by reason",
            ["reason"],
            registry=r,
        )
        self.txs_relayed = Counter(
            "txpool_txs_relayed",
            "Txs relayed to another validator's intake (abci.mempool = app), by peer and "
            "result (sent / dropped)",
            ["peer", "result"],
            registry=r,
        )
        self.verifier_calls = Counter(
            "ml_verifier_calls",
            "Calls to the ML verifier, by result (ok / failed / unavailable)",
            ["result"],
            registry=r,
        )
        for result in ("ok", "failed", "unavailable"):
            self.verifier_calls.labels(result=result)
        self._lookups = 0
        self._hits = 0

    def record_cache_lookup(self, hit: bool) -> None:
        """Count one V_auth cache lookup and update the hit ratio."""
        self._lookups += 1
        self._hits += hit
        self.ml_cache_hit_ratio.set(self._hits / self._lookups)
