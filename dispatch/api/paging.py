"""Paged lists: the ``limit``/``offset`` query parameters and one way to answer them.

Every list endpoint takes ``limit: Limit`` and ``offset: Offset`` (declared on the endpoint, so
each keeps its own default and its OpenAPI parameters stay where they are) and answers with
:func:`fetch_page` (a :class:`~dispatch.models.Page`: the items and the total that matched) or,
for the few lists that answer a bare list, :func:`fetch_rows`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query
from pydantic import BeforeValidator
from sqlalchemy import ColumnElement, FromClause, RowMapping, Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch.models import Page

__all__ = ["Limit", "Offset", "QueryTime", "equal_to", "fetch_page", "fetch_rows"]

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _not_a_number(value: object) -> object:
    # pydantic reads a bare number as seconds since 1970; in a query that is a typo, not a date.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected a date and time (ISO 8601, e.g. 2026-12-01T08:00), not a number")
    return value


#: A date and time in a query (ISO 8601, as the OpenAPI document says): never a bare number.
QueryTime = Annotated[datetime, BeforeValidator(_not_a_number)]

T = TypeVar("T")


def equal_to(table: Table, **values: object) -> list[ColumnElement[bool]]:
    """The filters ``column == value`` for each query parameter that was given (not None)."""
    return [table.c[name] == value for name, value in values.items() if value is not None]


async def fetch_rows(
    conn: AsyncConnection,
    query: Select[Any],
    *,
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    offset: int,
    item: Callable[[RowMapping], T],
) -> list[T]:
    """One page of ``query``'s rows matching ``where``, in ``order_by`` order, as items."""
    rows = await conn.execute(query.where(*where).order_by(*order_by).limit(limit).offset(offset))
    return [item(row) for row in rows.mappings()]


async def fetch_page(
    conn: AsyncConnection,
    page: type[Page[T]],
    query: Select[Any],
    *,
    counted: FromClause,
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    offset: int,
    item: Callable[[RowMapping], T],
) -> Page[T]:
    """A :class:`Page` of ``query``'s rows; the total counts the rows of ``counted`` matching
    ``where`` (the table itself, so joins made only for display do not slow the count)."""
    total = (
        await conn.execute(select(func.count()).select_from(counted).where(*where))
    ).scalar_one()
    items = await fetch_rows(
        conn, query, where=where, order_by=order_by, limit=limit, offset=offset, item=item
    )
    return page(items=items, total=int(total))
