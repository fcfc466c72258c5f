"""The examples' shared set-up: targets from SQLHTTP_TARGETS, or a seeded SQLite demo database as target ``demo``.

The demo database is a small shop (customers, products, orders). Its target accepts username ``demo`` with password
``demo``; SQLite has no databases by name, so any non-empty ``database`` is accepted. It also answers to provider
``postgres``, because PolyScale's client refuses to send ``sqlite`` (see docs/configuration.md, ``Target.providers``).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from sqlhttp_middleware.env import options_from_env
from sqlhttp_middleware.options import Target

DEMO_DATABASE = Path(os.environ.get("SQLHTTP_DEMO_DB", Path(__file__).resolve().parent / "demo.db"))

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE NOT NULL,
                        country TEXT NOT NULL, joined TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
                       price_cents INTEGER NOT NULL, stock INTEGER NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
                     ordered_at TEXT NOT NULL);
"""

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.com", "GB", "2024-01-15"),
    ("Grace Hopper", "grace@example.com", "US", "2024-02-03"),
    ("Katherine Johnson", "katherine@example.com", "US", "2024-03-21"),
    ("Margaret Hamilton", "margaret@example.com", "US", "2024-04-09"),
    ("Hedy Lamarr", "hedy@example.com", "AT", "2024-05-30"),
    ("Radia Perlman", "radia@example.com", "US", "2024-06-12"),
]
PRODUCTS = [
    ("KB-001", "Mechanical keyboard", 12900, 40),
    ("MS-002", "Wireless mouse", 4900, 120),
    ("MN-003", "27-inch monitor", 32900, 15),
    ("HD-004", "Noise-cancelling headphones", 24900, 30),
    ("CB-005", "USB-C cable, 2 m", 1500, 500),
]
ORDERS = [
    (1, 1, 1, "2024-07-01T10:15:00"), (2, 3, 2, "2024-07-02T14:03:00"), (3, 2, 1, "2024-07-03T09:41:00"),
    (1, 5, 3, "2024-07-04T18:22:00"), (4, 4, 1, "2024-07-05T11:00:00"), (5, 1, 1, "2024-07-06T16:45:00"),
    (6, 5, 10, "2024-07-07T08:30:00"), (2, 4, 1, "2024-07-08T20:10:00"),
]


def seed(path: Path = DEMO_DATABASE) -> Path:
    """(Re)create the demo database at ``path``, atomically: a server starting meanwhile never sees half of it."""
    path = Path(path)
    building = path.with_name(f".{path.name}.{os.getpid()}")
    building.unlink(missing_ok=True)
    with sqlite3.connect(building) as connection:
        connection.executescript(SCHEMA)
        connection.executemany("INSERT INTO customers (name, email, country, joined) VALUES (?, ?, ?, ?)", CUSTOMERS)
        connection.executemany("INSERT INTO products (sku, name, price_cents, stock) VALUES (?, ?, ?, ?)", PRODUCTS)
        connection.executemany(
            "INSERT INTO orders (customer_id, product_id, quantity, ordered_at) VALUES (?, ?, ?, ?)", ORDERS
        )
    connection.close()
    building.replace(path)
    return path


def demo_target(path: Path = DEMO_DATABASE) -> Target:
    if not path.exists():
        seed(path)
    # The result cache on: run a SELECT twice and the second answer says X-Cache: HIT (curl -i shows it).
    return Target(f"sqlite:///{path}", users={"demo": "demo"}, api_keys={"demo": "demo-token"},
                  providers=("postgres",), cache=True)


def middleware_options() -> dict[str, Any]:
    """Options for the examples: everything SQLHTTP_* sets, with the SQLite demo when no targets are given."""
    options = options_from_env()
    if "targets" not in options:
        options["targets"] = {"demo": demo_target()}
    return options


if __name__ == "__main__":
    print(seed(Path(sys.argv[1] if len(sys.argv) > 1 else "demo.db")))
