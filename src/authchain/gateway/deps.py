"""FastAPI dependencies of the gateway, as named `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from authchain.gateway.config import ApiSettings
from authchain.gateway.metrics import GatewayMetrics
from authchain.gateway.node_client import NodeClient


def get_node(request: Request) -> NodeClient:
    node: NodeClient = request.app.state.node
    return node


def get_api_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


NodeDep = Annotated[NodeClient, Depends(get_node)]
SettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
