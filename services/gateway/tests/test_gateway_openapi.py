"""The merged document names the problems the gateway answers itself."""

from __future__ import annotations

import copy

import pytest
from gateway_testkit import MEDIA_OPENAPI
from pressroom_gateway.openapi import OpenAPIMerger

pytestmark = [pytest.mark.unit]

OWN = {
    "openapi": "3.1.0",
    "info": {"title": "Pressroom gateway", "version": "0.1.0"},
    "paths": {
        "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/v1/brands/current": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Problem": {"type": "object"}}},
}


def test_proxied_operations_document_429_502_503_504_and_own_routes_429():
    media = copy.deepcopy(MEDIA_OPENAPI)
    media["paths"]["/v1/media"]["post"] = {"responses": {"503": {"description": "storage is full"}}}
    merger = OpenAPIMerger(lambda: copy.deepcopy(OWN), {"/v1/media": "http://media"})
    merger.documents["http://media"] = media
    paths = merger.merged()["paths"]

    listed = paths["/v1/media"]["get"]["responses"]
    assert {"200", "429", "502", "503", "504"} <= set(listed)
    for status in ("429", "502", "503", "504"):
        content = listed[status]["content"]["application/problem+json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "Retry-After" in listed["429"]["headers"]
    # The service's own entry for a status wins.
    assert paths["/v1/media"]["post"]["responses"]["503"]["description"] == "storage is full"
    # The gateway's own routes are rate limited but not proxied; the probes are neither.
    assert set(paths["/v1/brands/current"]["get"]["responses"]) == {"200", "429"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
