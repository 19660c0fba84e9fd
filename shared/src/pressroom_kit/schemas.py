"""Request schemas that say what the server enforces.

Litestar writes its own OpenAPI schema for a pydantic model and loses part of what pydantic
validates: ``extra="forbid"``, the bounds of an optional list, a pattern. A client that
trusts the document then sends requests the server refuses. :class:`RequestSchemaPlugin`
(installed by the app factory) takes each scalar property from pydantic's own validation
schema instead, and shows ``extra="forbid"`` as ``additionalProperties: false``; a property
that holds a model keeps Litestar's ``$ref``.

A PATCH field that may be left out but not sent as ``null`` is annotated with
:data:`NOT_NULL`: pydantic refuses ``null`` (a 422 naming the field) and the schema shows
no ``null``::

    class BrandUpdate(BaseModel):
        name: Annotated[str | None, NOT_NULL] = Field(default=None, min_length=1)

Litestar validates a body with ``model_validate(value, strict=False)``, and an explicit
``strict=False`` overrides a field's own strictness: ``StrictBool`` took ``0`` as ``false``
while the document says ``boolean``. :class:`FieldStrictnessPlugin` (installed by the app
factory in place of Litestar's) validates with ``strict=None``: lax where a model is lax (a
UUID or datetime from a JSON string), strict where a field or model says strict.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from litestar.openapi.spec import Schema
from litestar.plugins.pydantic import PydanticInitPlugin, PydanticSchemaPlugin
from litestar.plugins.pydantic.plugins.init import _dec_pydantic_v2
from litestar.typing import FieldDefinition
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

# JSON Schema keyword -> litestar.openapi.spec.Schema field, for what pydantic emits on a
# property that holds no model.
_KEYWORDS = {
    "type": "type",
    "format": "format",
    "pattern": "pattern",
    "enum": "enum",
    "const": "const",
    "default": "default",
    "description": "description",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "uniqueItems": "unique_items",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
}


class NotNull:
    """Field metadata: the field may be absent, but ``null`` is refused (and not documented)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = dict(handler(schema))
        options = [o for o in value.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            value = {**options[0], **value}
        elif options:
            value["anyOf"] = options
        return value


NOT_NULL = NotNull()


def _refuse_null(value: Any) -> Any:
    if value is None:
        # Worded so that no "must not be null" / "cannot be null" heuristic (schemathesis reads
        # those as "this field is required") mistakes an optional field for a mandatory one.
        raise PydanticCustomError("not_null", "null is refused here; leave the field out instead")
    return value


def json_schema_to_openapi(value: dict[str, Any]) -> Schema:
    """A Litestar ``Schema`` from a JSON Schema without references (pydantic's output)."""
    fields: dict[str, Any] = {}
    for keyword, field in _KEYWORDS.items():
        if keyword in value:
            fields[field] = value[keyword]
    if "items" in value:
        fields["items"] = json_schema_to_openapi(value["items"])
    for keyword, field in (("anyOf", "any_of"), ("oneOf", "one_of"), ("allOf", "all_of")):
        if keyword in value:
            fields[field] = [json_schema_to_openapi(v) for v in value[keyword]]
    extra = value.get("additionalProperties")
    if isinstance(extra, dict):
        fields["additional_properties"] = json_schema_to_openapi(extra)
    elif isinstance(extra, bool):
        fields["additional_properties"] = extra
    return Schema(**fields)


class RequestSchemaPlugin(PydanticSchemaPlugin):
    """Litestar's pydantic schema plugin, corrected with pydantic's validation schema."""

    @classmethod
    def for_pydantic_model(cls, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().for_pydantic_model(field_definition, schema_creator)
        model = field_definition.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return schema
        try:
            truth = model.model_json_schema(mode="validation")
        except Exception:  # a type pydantic cannot describe: keep Litestar's schema
            return schema
        schema.required = sorted(truth.get("required", [])) or None
        if model.model_config.get("extra") == "forbid":
            schema.additional_properties = False
        properties = dict(schema.properties or {})
        for name, expected in truth.get("properties", {}).items():
            if name in properties and "$ref" not in repr(expected):
                properties[name] = json_schema_to_openapi(expected)
        schema.properties = properties
        return schema


class FieldStrictnessPlugin(PydanticInitPlugin):
    """Litestar's pydantic decoding, keeping each field's and model's own ``strict``."""

    @classmethod
    def decoders(
        cls, validate_strict: bool = False
    ) -> list[tuple[Callable[[Any], bool], Callable[[Any, Any], Any]]]:
        # Litestar's own pydantic 2 decoder (its error conversion too), given strict=None.
        return [
            (predicate, partial(_dec_pydantic_v2, strict=None))  # type: ignore[arg-type]
            if isinstance(decoder, partial) and decoder.func is _dec_pydantic_v2
            else (predicate, decoder)
            for predicate, decoder in super().decoders(validate_strict)
        ]


__all__ = [
    "NOT_NULL",
    "TIME_PATTERN",
    "FieldStrictnessPlugin",
    "NotNull",
    "RequestSchemaPlugin",
    "json_schema_to_openapi",
]


# RFC 3339 with an offset, years 2001-2998, as an OpenAPI pattern: whatever the offset, a
# time matching it is inside 2000..3000 UTC, so a schema-valid time is never refused for
# its range (a bare number, which pydantic would read as a Unix time, never matches).
TIME_PATTERN = (
    r"^(200[1-9]|20[1-9][0-9]|2[1-8][0-9]{2}|29[0-8][0-9]|299[0-8])-(0[1-9]|1[0-2])"
    r"-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
