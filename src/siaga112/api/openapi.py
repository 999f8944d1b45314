"""The API as an OpenAPI 3.1 document, built from the route table (api/routing.Route) and the
pydantic models of its queries, bodies and answers (api/schemas.py)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from siaga112.api.errors import STATUS_TEXT
from siaga112.api.routing import SAFE_METHODS, Route
from siaga112.api.schemas import ErrorAnswer

API_VERSION = "1"
Mode = Literal["validation", "serialization"]


def openapi(routes: list[Route]) -> dict[str, Any]:
    """An OpenAPI 3.1 document of `routes`, its schemas built from their pydantic models."""
    inputs = {m for r in routes for m in (r.query, r.body) if m is not None}
    outputs = {r.answer for r in routes if r.answer is not None} | {ErrorAnswer}
    keys: list[tuple[type[BaseModel], Mode]] = [
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
    ]
    refs, top = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: Mode) -> Any:
        return refs[(model, mode)]

    def schema_of(model: type[BaseModel]) -> dict[str, Any]:
        name = str(ref(model, "validation")["$ref"]).rsplit("/", 1)[-1]
        found: dict[str, Any] = schemas[name]
        return found

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        params = _path_params(r) + (_query_params(schema_of(r.query)) if r.query else [])
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, params, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Siaga112 operations API", "version": API_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(r: Route) -> list[dict[str, Any]]:
    return [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", r.path)]


def _query_params(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        out.append(param)
    return out


def _operation(r: Route, params: list[dict[str, Any]], ref: Any) -> dict[str, Any]:
    if r.answer is not None:
        content = {r.media: {"schema": ref(r.answer, "serialization")}}
    else:
        content = {r.media: {"schema": {"type": "string"}}}
    if r.also_csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(r.status): {"description": "success", "content": content}}
    codes = set(r.errors)
    if r.query is not None or r.body is not None or params:
        codes |= {422}
    if r.body is not None:
        codes |= {400}
    if r.role is not None:
        codes |= {401, 403}
    if r.method not in SAFE_METHODS:
        codes |= {503}  # a standby changes nothing (api/standby.py)
    for code in sorted(codes):
        responses[str(code)] = {
            "description": STATUS_TEXT.get(code, "error"),
            "content": {"application/json": {"schema": ref(ErrorAnswer, "serialization")}},
        }
    op: dict[str, Any] = {
        "summary": r.summary,
        "operationId": r.handler.__name__.strip("_"),
        "parameters": params,
        "responses": responses,
        "security": [{"bearer": []}] if r.role is not None else [],
        "x-role": r.role.value if r.role is not None else None,
    }
    if r.agency_ok:
        op["x-agency-token"] = True
    if r.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(r.body, "validation")}},
        }
    return op
