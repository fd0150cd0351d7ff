"""docs/openapi/ holds valid OpenAPI documents that describe exactly the routes the gateway
serves: the registration API, the public API (less the pages and static files) and the
operator API; the operator API's bodies are the models its handlers validate with.
(tests/test_fuzz.py then fuzzes all three against a running stack.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel

from gateway.app import create_app, create_operator_app
from gateway.offers import CLAIM_PATH, ClaimBody
from gateway.registration import CART_PATH, RECEIPT_LOOKUP_PATH
from waitroom.schedule import EventPatch, EventSpec
from waitroom.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}
PAGES = ("/events/", "/register/", "/receipts/", "/static")


def _document(repo_root: Path, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((repo_root / "docs/openapi" / name).read_text("utf-8"))
    validate(spec)
    return spec


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def _served(app: web.Application) -> set[tuple[str, str]]:
    served = set()
    for route in app.router.routes():
        resource = route.resource
        path = resource.canonical if resource is not None else ""
        if route.method in ("HEAD", "*") or not path or path.startswith(PAGES):
            continue
        served.add((route.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    return served


def _registration(path: str) -> bool:
    return (
        path.startswith(CART_PATH)
        or path in (RECEIPT_LOOKUP_PATH, CLAIM_PATH)
        or path.endswith("/catalogue")
    )


def test_registration_and_public_documents_cover_the_public_listener(
    repo_root: Path, settings: Settings
) -> None:
    served = _served(create_app(settings))
    registration = {(m, p) for m, p in served if _registration(p)}
    public = served - registration
    assert registration and _documented(_document(repo_root, "registration.yaml")) == registration
    assert public and _documented(_document(repo_root, "public.yaml")) == public


def test_the_operator_document_covers_the_operator_listener(
    repo_root: Path, settings: Settings
) -> None:
    served = {
        (method, path)
        for method, path in _served(create_operator_app(create_app(settings)))
        if not path.startswith("/console/")  # the staff console's pages, not an API
    }
    assert served and _documented(_document(repo_root, "operator.yaml")) == served


@pytest.mark.parametrize(("name", "model"), [("EventSpec", EventSpec), ("EventPatch", EventPatch)])
def test_the_operator_bodies_are_the_handlers_models(
    repo_root: Path, name: str, model: type[BaseModel]
) -> None:
    schema = _document(repo_root, "operator.yaml")["components"]["schemas"][name]
    assert set(schema["properties"]) == set(model.model_fields)
    required = {n for n, field in model.model_fields.items() if field.is_required()}
    assert set(schema.get("required", [])) == required
    assert schema["additionalProperties"] is False  # extra="forbid"
    assert model.model_config.get("extra") == "forbid"


def _body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][
        "post" if "put" not in spec["paths"][path] else "put"
    ]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_registration_bodies_are_the_handlers_models(repo_root: Path) -> None:
    from gateway import registration as handlers

    spec = _document(repo_root, "registration.yaml")
    cart = "/api/v1/events/{event_id}/cart"
    bodies: dict[str, type[BaseModel]] = {
        f"{cart}/family": handlers.IdentifyBody,
        f"{cart}/members": handlers.MemberBody,
        f"{cart}/items": handlers.ItemsBody,
        f"{cart}/duplicate": handlers.ParticipantBody,
        f"{cart}/waiting-list": handlers.WaitingListBody,
        f"{cart}/payer": handlers.PayerBody,
        f"{cart}/conditions": handlers.ConditionsBody,
        f"{cart}/checkout": handlers.CheckoutBody,
        "/api/v1/receipts/lookup": handlers.ReceiptLookupBody,
        "/api/v1/events/{event_id}/offers/claim": ClaimBody,
    }
    for path, model in bodies.items():
        schema = _body_schema(spec, path)
        assert set(schema["properties"]) == set(model.model_fields), path
        required = {n for n, field in model.model_fields.items() if field.is_required()}
        assert set(schema.get("required", [])) == required, path
        assert schema.get("additionalProperties") is False, path
