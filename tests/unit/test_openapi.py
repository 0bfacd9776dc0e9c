"""Every path parameter of the three HTTP APIs declares its pattern in OpenAPI, so clients and
fuzzers know what the server accepts (it answered 422 to what its spec did not rule out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from authchain.chain.config import ChainConfig
from authchain.chain.rpc import RpcContext, create_rpc_app
from authchain.gateway.app import create_app as create_gateway
from authchain.gateway.config import ApiSettings
from authchain.ml_service.config import MlServiceSettings
from authchain.ml_service.main import create_app as create_ml_service
from tests.support.chain import CHAIN, VALIDATOR, make_engine


def apps(tmp: Path) -> dict[str, FastAPI]:
    config = ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1})
    ml = MlServiceSettings(model_root=tmp / "m", evidence_root=tmp / "e")
    return {
        "node": create_rpc_app(RpcContext(make_engine(), config, VALIDATOR.account)),
        "gateway": create_gateway(ApiSettings()),
        "ml-service": create_ml_service(ml),
    }


@pytest.mark.parametrize("name", ["node", "gateway", "ml-service"])
def test_every_path_parameter_declares_its_pattern(name: str, tmp_path: Path) -> None:
    spec: dict[str, Any] = apps(tmp_path)[name].openapi()
    params = [
        (path, p)
        for path, item in spec["paths"].items()
        for op in item.values()
        for p in op.get("parameters", [])
        if p["in"] == "path"
    ]
    assert params, "no path parameters found"
    for path, param in params:
        assert param["schema"].get("pattern"), f"{name} {path}: {param['name']} has no pattern"
