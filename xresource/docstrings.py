"""Field descriptions from attribute docstrings, read only when schemas are generated.

Models document each field with a string literal right under it. Pydantic can
turn those into descriptions itself (``use_attribute_docstrings``), but it does
so by parsing every model's source when the class is created, which made
``import`` of the backends cost most of a second. Reading them here, only when
a schema or the docs are generated, keeps validation start-up fast.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema


@cache
def attribute_docstrings(cls: type[Any]) -> dict[str, str]:
    """``{field: docstring}`` for ``cls`` and its bases (a subclass's own text wins)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not (isinstance(klass, type) and issubclass(klass, BaseModel)):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        if not tree.body or not isinstance(tree.body[0], ast.ClassDef):
            continue
        body = tree.body[0].body
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                found[node.target.id] = inspect.cleandoc(following.value.value)
    return found


class DocumentedSchema(GenerateJsonSchema):
    """Pydantic's schema generator, adding attribute docstrings as descriptions."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        cls = schema["cls"]
        properties = json_schema.get("properties")
        if isinstance(properties, dict) and issubclass(cls, BaseModel):
            docs = attribute_docstrings(cls)
            for name, field in cls.model_fields.items():
                key = field.alias if field.alias in properties else name
                prop = properties.get(key)
                if isinstance(prop, dict) and name in docs:  # the field's own words win over its type's
                    prop["description"] = docs[name]
        return json_schema
