"""docs/openapi/registration.yaml is a valid OpenAPI document and describes exactly the
registration routes the gateway serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.registration import CART_PATH, RECEIPT_LOOKUP_PATH
from waitroom.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}


def test_the_openapi_file_is_valid_and_matches_the_routes(
    repo_root: Path, settings: Settings
) -> None:
    spec = yaml.safe_load((repo_root / "docs/openapi/registration.yaml").read_text("utf-8"))
    validate(spec)
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }
    app = create_app(settings)
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        registration = path.startswith(CART_PATH) or path == RECEIPT_LOOKUP_PATH
        if route.method != "HEAD" and (registration or path.endswith("/catalogue")):
            served.add((route.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    assert served and documented == served
