"""Model instances from Core rows, without the ORM's load: for the reads every step makes.

A prebuilt Core statement (bound parameters, compiled once) run on the session's connection
costs a third of an ORM select of the same rows; most of the difference is the ORM's
per-query setup (its compile context, the identity map, loader options), not the rows.
`loaded` turns such rows into instances that behave as the ORM's would after their session
closed (detached: `session.add` of one updates its row, never inserts it), at a tenth of the
cost of the model's `__init__` (which runs pydantic's field handling again for values the
database already holds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Column, Row, Select, inspect, select
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlmodel import SQLModel

M = TypeVar("M", bound=SQLModel)


def columns(model: type[SQLModel], *, without: tuple[str, ...] = ()) -> list[Column[Any]]:
    """The columns of the model's table, in order, but those named in `without` (what
    `loaded` expects of a row)."""
    return [c for c in model.__table__.columns if c.key not in without]  # type: ignore[attr-defined]


def select_of(model: type[SQLModel], *more: Any, without: tuple[str, ...] = ()) -> Select[Any]:
    """SELECT the model's columns (but `without`), then `more`: rows for `loaded`."""
    return select(*columns(model, without=without), *more)


def loaded(
    model: type[M], row: Row[Any] | Sequence[Any], *, offset: int = 0, without: tuple[str, ...] = ()
) -> M:
    """The instance of the row's values, from `offset` on, in the order of `columns(model,
    without=without)`, as the ORM would have loaded it from that row, detached. The columns
    left out are not loaded: reading one raises (sqlalchemy.orm.exc.DetachedInstanceError),
    as a deferred column of a detached instance does."""
    shape = _shape(model, without)
    values = row[offset : offset + len(shape.names)]
    obj: M = shape.manager.new_instance()
    obj.__dict__.update(zip(shape.names, values, strict=True))
    # The identity the ORM gives a loaded row: with it, the instance is detached, not new.
    instance_state(obj).key = (model, tuple(values[i] for i in shape.key), None)
    return obj


def loaded_all(model: type[M], rows: Iterable[Row[Any]]) -> list[M]:
    return [loaded(model, row) for row in rows]


def unsaved(model: type[M], values: Mapping[str, Any]) -> M:
    """A new instance of `values`, the model's defaults for the rest (as `model(**values)`
    gives for a table model, which does not validate), for a row a Core INSERT writes."""
    obj = _new(model)
    fields = model.model_fields
    obj.__dict__.update(
        {n: f.get_default(call_default_factory=True) for n, f in fields.items() if n not in values}
    )
    obj.__dict__.update(values)
    return obj


@dataclass(frozen=True)
class _Shape:
    names: list[str]
    key: list[int]
    """Where the primary key's columns are, in `names`."""
    manager: Any


_SHAPES: dict[tuple[type[SQLModel], tuple[str, ...]], _Shape] = {}


def _shape(model: type[SQLModel], without: tuple[str, ...] = ()) -> _Shape:
    shape = _SHAPES.get((model, without))
    if shape is None:
        configure_mappers()  # attribute access needs the mappers configured (the ORM's first query does it)
        cols = columns(model, without=without)
        primary = list(inspect(model).primary_key)
        shape = _SHAPES[(model, without)] = _Shape(
            names=[c.key for c in cols],
            key=[next(i for i, c in enumerate(cols) if c is p) for p in primary],
            manager=manager_of_class(model),
        )
    return shape


def _new(model: type[M]) -> M:
    obj: M = _shape(model).manager.new_instance()
    return obj
