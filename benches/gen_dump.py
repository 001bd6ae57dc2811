#!/usr/bin/env python3
"""Writes a pg_dump-like plain SQL dump of a growing application database, as of day N.

The dumps of consecutive days differ the way real ones do, which is what content-defined
chunking has to cope with:
  * appended rows: every table grows a little each day (new users, orders, events);
  * clustered updates: recent orders change status; PostgreSQL writes the new row version at
    the end of the table unless the update is HOT, so half of them move to the end of the
    COPY block and half stay in place;
  * scattered deletes: a few users and events disappear from random places;
  * scattered updates (the default workload, `scattered`): 0.1% of the rows of every table
    change wherever they are, in place (a HOT update) or moved to the end. With 64 KiB chunks of
    a few hundred rows each, this touches a large share of the chunks every day, as the nightly
    dump of a busy OLTP database does. `--workload clustered` leaves them out (the workload the
    stream-chunking study in FORMAT.md §5 used).
Deterministic: the same day, size and workload always give the same bytes.

Usage: gen_dump.py DAY OUT [--size-mb 512] [--workload scattered|clustered]
       gen_dump.py DAY 'night{day}.sql' --series     (every day from 1 to DAY, one file each)
"""

import argparse
import random
import sys

HEADER = """--
-- PostgreSQL database dump
--

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.users (id bigint NOT NULL, email text NOT NULL, name text, created_at timestamptz);
CREATE TABLE public.orders (id bigint NOT NULL, user_id bigint, amount numeric(12,2), status text, created_at timestamptz);
CREATE TABLE public.events (id bigint NOT NULL, ts timestamptz, kind text, payload jsonb);

"""

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")
KINDS = ("login", "logout", "view", "click", "purchase", "error")


def user_row(i, version):
    r = random.Random(i * 7919 + 1)
    name = f"{r.choice(WORDS).title()} {r.choice(WORDS).title()}"
    return (f"{i}\t{r.choice(WORDS)}.{i}@example.{'org' if version % 2 else 'com'}\t{name}\t"
            f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00+00\n")


def order_row(i, version):
    r = random.Random(i * 104729 + 2)
    return (f"{i}\t{r.randint(1, 10**6)}\t{r.randint(100, 99999) / 100:.2f}\t"
            f"{STATUSES[min(version, len(STATUSES) - 1)]}\t"
            f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}+00\n")


def event_row(i, version):
    r = random.Random(i * 15485863 + 3)
    words = " ".join(r.choice(WORDS) for _ in range(r.randint(3, 12)))
    return (f"{i}\t2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}+00\t"
            f"{r.choice(KINDS)}\t{{\"session\": \"{r.getrandbits(64):016x}\", \"note\": \"{words}\", "
            f"\"v\": {version}}}\n")


class Table:
    """Rows in physical order as (id, version); the row text is a function of both."""

    def __init__(self, name, columns, render, count):
        self.name, self.columns, self.render = name, columns, render
        self.rows = [(i, 0) for i in range(1, count + 1)]
        self.next_id = count + 1

    def append(self, n):
        self.rows.extend((i, 0) for i in range(self.next_id, self.next_id + n))
        self.next_id += n

    def update_recent(self, rng, n):
        # The n most recent rows change.
        start = max(0, len(self.rows) - 4 * n)
        self.update(rng, sorted(rng.sample(range(start, len(self.rows)), min(n, len(self.rows) - start))))

    def update_scattered(self, rng, n):
        # n rows anywhere change.
        self.update(rng, rng.sample(range(len(self.rows)), min(n, len(self.rows))))

    def update(self, rng, picked):
        # The rows at `picked` change; half in place (a HOT update), half move to the end.
        moved = []
        for pos in picked:
            i, v = self.rows[pos]
            if rng.random() < 0.5:
                self.rows[pos] = (i, v + 1)
            else:
                self.rows[pos] = None
                moved.append((i, v + 1))
        self.rows = [row for row in self.rows if row is not None] + moved

    def delete_scattered(self, rng, n):
        doomed = set(rng.sample(range(len(self.rows)), min(n, len(self.rows))))
        self.rows = [row for pos, row in enumerate(self.rows) if pos not in doomed]

    def write(self, out):
        out.write(f"COPY public.{self.name} ({self.columns}) FROM stdin;\n")
        buf = []
        for i, v in self.rows:
            buf.append(self.render(i, v))
            if len(buf) >= 10000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
        out.write("\\.\n\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("day", type=int)
    parser.add_argument("out")
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--workload", choices=("scattered", "clustered"), default="scattered")
    parser.add_argument("--series", action="store_true",
                        help="write every day up to DAY, to OUT with {day} replaced")
    args = parser.parse_args()
    # Average row sizes are about 77 (users), 63 (orders) and 136 (events) bytes (measured).
    scale = args.size_mb * (1 << 20) / (0.1 * 77 + 0.4 * 63 + 0.5 * 136)
    tables = [
        Table("users", "id, email, name, created_at", user_row, int(scale * 0.1)),
        Table("orders", "id, user_id, amount, status, created_at", order_row, int(scale * 0.4)),
        Table("events", "id, ts, kind, payload", event_row, int(scale * 0.5)),
    ]
    users, orders, events = tables

    def write(path):
        with open(path, "w", buffering=1 << 20) as out:
            out.write(HEADER)
            for table in tables:
                table.write(out)
            out.write("--\n-- PostgreSQL database dump complete\n--\n")

    if args.series:
        write(args.out.format(day=1))
    for day in range(2, args.day + 1):
        rng = random.Random(day)
        users.append(len(users.rows) // 500)
        users.delete_scattered(rng, len(users.rows) // 2000)
        orders.update_recent(rng, len(orders.rows) // 200)
        orders.append(len(orders.rows) // 100)
        events.delete_scattered(rng, len(events.rows) // 5000)
        events.append(len(events.rows) // 50)
        if args.workload == "scattered":
            for table in tables:
                table.update_scattered(rng, len(table.rows) // 1000)
        if args.series:
            write(args.out.format(day=day))
    if not args.series:
        write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
