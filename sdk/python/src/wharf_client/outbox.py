"""An outbox in the application's own database: messages written in the same transaction as
the work that makes them, sent by a Wharf host once that transaction commits, and never if it
rolls back. No two-phase commit, and no call to Wharf while the transaction is open.

The table is made by the DDL ``wharf outbox schema --dialect postgres|mysql`` prints (add it
to your migrations), and a Wharf host names the database in ``[[sources]]``:

.. code-block:: toml

    [[sources]]
    name = "shop"
    url = "postgres://shop@db/shop"      # or mysql://…
    table = "wharf_outbox"               # the default

Then, inside the application's transaction:

.. code-block:: python

    from wharf_client import outbox

    # SQLAlchemy: a Session or a Connection
    with Session(engine) as session, session.begin():
        session.add(order)
        outbox.add(session, "rabbit:orders", {"id": order.id}, key=f"order-{order.id}")

    # Django
    with transaction.atomic():
        order.save()
        outbox.add(connection, "rabbit:orders", {"id": order.id}, key=f"order-{order.id}")

    # psycopg (2 or 3), PyMySQL, mysqlclient: a DB-API connection or cursor
    with conn:
        outbox.add(conn, "rabbit:orders", {"id": 7}, key="order-7")

Messages of one destination and key are sent in the order their rows were written; each is
sent at least once, with the same message id every time (``{source}.{row}`` unless ``id`` is
given), for consumers to deduplicate.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Union

from .client import Message, Payload, _message_json

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

__all__ = ["add"]


def add(
    db: Any,
    to: str,
    payload: Union[Payload, Message] = b"",
    *,
    key: Optional[str] = None,
    table: str = "wharf_outbox",
    **fields: Any,
) -> None:
    """Writes a message for ``to`` (``connection:address``) into the outbox table, in ``db``'s
    current transaction: a SQLAlchemy ``Session`` or ``Connection``, Django's ``connection``,
    or a DB-API connection or cursor (psycopg 2 or 3, PyMySQL, mysqlclient). ``payload`` and
    ``fields`` (``headers``, ``content_type``, ``correlation_id``, ``reply_to``, ``id``) are
    :meth:`Client.publish`'s; ``key`` orders the messages of one destination and is the
    message's key."""
    if ":" not in to:
        raise ValueError(f"{to!r} is not an address: write connection:address")
    if not _TABLE.match(table):
        raise ValueError(f"{table!r} is not a table name")
    if key is not None and not isinstance(key, str):
        raise TypeError("key must be text: it orders the rows of one destination")
    message = json.dumps(_message_json(payload, key=key, **fields), separators=(",", ":"))
    row = (to, key, message)
    if _is_sqlalchemy(db):
        from sqlalchemy import text

        postgres = _sqlalchemy_dialect(db) == "postgresql"
        value = "CAST(:message AS jsonb)" if postgres else ":message"
        db.execute(
            text(f"INSERT INTO {table} (destination, msg_key, message) VALUES (:to, :key, {value})"),
            {"to": to, "key": key, "message": message},
        )
        return
    postgres = _is_postgres(db)
    value = "CAST(%s AS jsonb)" if postgres else "%s"
    sql = f"INSERT INTO {table} (destination, msg_key, message) VALUES (%s, %s, {value})"
    if hasattr(db, "execute") and not hasattr(db, "cursor"):
        db.execute(sql, row)  # a cursor
        return
    cursor = db.cursor()
    try:
        cursor.execute(sql, row)
    finally:
        cursor.close()


def _is_sqlalchemy(db: Any) -> bool:
    return type(db).__module__.startswith("sqlalchemy.")


def _sqlalchemy_dialect(db: Any) -> str:
    bind = db.get_bind() if hasattr(db, "get_bind") else db
    return bind.dialect.name


def _is_postgres(db: Any) -> bool:
    vendor = getattr(db, "vendor", None)  # Django's connection
    if vendor is not None:
        return vendor == "postgresql"
    module = type(db).__module__
    return module.startswith("psycopg") or module.startswith("pg8000")
