"""The gateway's Prometheus metrics (served on 9899 and at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    """Request counts and latencies, registrations by result, node failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests, by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.registrations = Counter(
            "gateway_registrations",
            "POST /models/register outcomes (queued or the refusal reason)",
            ["result"],
            registry=self.registry,
        )
        self.node_unavailable = Counter(
            "gateway_node_unavailable", "Requests no node answered", registry=self.registry
        )
