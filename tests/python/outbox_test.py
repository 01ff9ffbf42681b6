"""The application outbox's helpers (`wharf_client.outbox.add`) inside real applications'
transactions, run by tests/sources.rs against a host relaying both databases: SQLAlchemy on
PostgreSQL (psycopg) and on MariaDB (PyMySQL), Django on PostgreSQL, and a bare psycopg
connection. Each part commits two orders with two messages each and rolls a third back;
the Rust side reads exactly the committed messages from RabbitMQ, in order per order.

Environment: WHARF_TO (connection:queue), APP_PG and APP_MYSQL (the databases' URLs).
Argument: the part to run. Each message's payload is `{order key}:{n}`.
"""

import os
import sys
from urllib.parse import urlparse

from wharf_client import outbox

TO = os.environ["WHARF_TO"]


class Declined(Exception):
    pass


def messages(write, key: str) -> None:
    for n in range(2):
        write(f"{key}:{n}", key)


def sqlalchemy_part(url: str, prefix: str) -> None:
    from sqlalchemy import BigInteger, Column, Text, create_engine
    from sqlalchemy.orm import Session, declarative_base

    Base = declarative_base()

    class Order(Base):
        __tablename__ = "orders"
        id = Column(BigInteger, primary_key=True)
        customer = Column(Text, nullable=False)

    engine = create_engine(url)
    for order, commit in ((1, True), (2, False), (3, True)):
        try:
            with Session(engine) as session, session.begin():
                session.add(Order(id=order, customer="Ada"))
                messages(lambda p, k: outbox.add(session, TO, p, key=k), f"{prefix}-{order}")
                if not commit:
                    raise Declined("payment declined")
        except Declined:
            pass
    engine.dispose()


def django_part(url: str) -> None:
    import django
    from django.conf import settings

    parts = urlparse(url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "HOST": parts.hostname,
                "PORT": parts.port or 5432,
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection, transaction

    for order, commit in ((11, True), (12, False), (13, True)):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO orders (id, customer) VALUES (%s, %s)", [order, "Ada"])
                messages(lambda p, k: outbox.add(connection, TO, p, key=k), f"django-{order}")
                if not commit:
                    raise Declined("payment declined")
        except Declined:
            pass


def psycopg_part(url: str) -> None:
    import psycopg

    for order, commit in ((21, True), (22, False), (23, True)):
        try:
            with psycopg.connect(url) as conn:  # commits on leaving, rolls back on an error
                conn.execute("INSERT INTO orders (id, customer) VALUES (%s, %s)", (order, "Ada"))
                messages(lambda p, k: outbox.add(conn, TO, p, key=k), f"psycopg-{order}")
                if not commit:
                    raise Declined("payment declined")
        except Declined:
            pass


def refusals() -> None:
    """Bad input is refused before anything is written."""
    for call, error in (
        (lambda: outbox.add(None, "no-colon", "x"), ValueError),
        (lambda: outbox.add(None, TO, "x", table="t; DROP TABLE orders"), ValueError),
        (lambda: outbox.add(None, TO, "x", key=b"bytes"), TypeError),
    ):
        try:
            call()
        except error:
            continue
        raise AssertionError("bad input was taken")


def main() -> None:
    part = sys.argv[1]
    pg = os.environ["APP_PG"]
    if part == "sqlalchemy-postgres":
        sqlalchemy_part(pg.replace("postgres://", "postgresql+psycopg://", 1), "sa-pg")
    elif part == "sqlalchemy-mariadb":
        sqlalchemy_part(os.environ["APP_MYSQL"].replace("mysql://", "mysql+pymysql://", 1), "sa-my")
    elif part == "django":
        django_part(pg)
    elif part == "psycopg":
        psycopg_part(pg)
    elif part == "refusals":
        refusals()
    else:
        raise SystemExit(f"no part {part}")
    print(f"{part} ok")


if __name__ == "__main__":
    main()
