"""Clients for the ML service that runs `V_auth`."""

from authchain.chain.ml_client.http import HttpMlVerifier

__all__ = ["HttpMlVerifier"]
