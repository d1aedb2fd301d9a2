"""A tool's arguments checked against its JSON schema, in the shape every action has.

The executor validates a call with `action.args_model.model_validate(raw)` and journals
`args.model_dump(mode="json")`. An MCP tool brings a JSON schema instead of a pydantic
model, so its `args_model` is a root model over the arguments object: validating it runs
the schema (jsonschema) and raises pydantic's ValidationError with what does not fit,
dumping it gives the object back as it came, and `model_json_schema()` is the server's
schema as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, ClassVar

import jsonschema
from pydantic import RootModel, model_validator
from pydantic_core import PydanticCustomError

MESSAGE_LIMIT = 200  # characters of one schema error (jsonschema quotes the offending value)
MAX_ERRORS = 5


class SchemaArguments(RootModel[dict[str, Any]]):
    """Arguments validated by `checker` (a jsonschema validator for `input_schema`)."""

    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    checker: ClassVar[Any] = None
    no_leading_dash: ClassVar[frozenset[str]] = frozenset()
    """Arguments an undo command puts on its command line: one starting with `-` would be an option."""

    @model_validator(mode="after")
    def _fits_the_schema(self) -> SchemaArguments:
        problems = [_describe(e) for e in self.checker.iter_errors(self.root)] if self.checker else []
        for name in sorted(self.no_leading_dash):
            value = self.root.get(name)
            if isinstance(value, str) and value.startswith("-"):
                problems.append(
                    f"{name}: must not start with '-': the undo command would read it as an option"
                )
        if problems:
            shown = "; ".join(sorted(problems)[:MAX_ERRORS])
            raise PydanticCustomError("json_schema", "{problems}", {"problems": shown})
        return self

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(cls.input_schema)


def arguments_model(
    name: str, schema: dict[str, Any], *, no_leading_dash: Iterable[str] = ()
) -> type[SchemaArguments]:
    """The args_model of a tool whose input schema is `schema`.

    Raises jsonschema.SchemaError when `schema` is not a valid JSON schema (the tool
    cannot be offered then: no call of it could be checked).
    """
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator_class.check_schema(schema)
    model: type[SchemaArguments] = type(f"{name}_arguments", (SchemaArguments,), {"__module__": __name__})
    model.input_schema = schema
    model.checker = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    model.no_leading_dash = frozenset(no_leading_dash)
    return model


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    message = str(error.message)
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + "…"
    return f"{where}: {message}" if where else message
