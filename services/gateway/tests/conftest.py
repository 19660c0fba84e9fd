"""Fixtures of the gateway tests; helpers live in ``gateway_testkit`` (a unique module name,
so test modules never import another folder's ``conftest``)."""

from gateway_testkit import backend, gateway, http

__all__ = ["backend", "gateway", "http"]
