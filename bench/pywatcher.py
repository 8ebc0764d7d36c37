#!/usr/bin/env python3
"""pywatcher: the DruID bulk-status watcher a user would write with the standard library only.

It is the baseline `bulkwatch-bench compare` measures bulkwatch against, so it is meant to be
straightforward and fair: no deliberate slowness, no heroics. One poll:

  1. token   POST the token URL, form body grant_type=client_credentials (cached until 90 % of
             expires_in has passed)
  2. fetch   GET the bulk URL with `Authorization: Bearer ...`, read the whole body
  3. decode  json.loads, then {bulkId: item} (items without a bulkId are skipped; a repeated
             bulkId keeps the last occurrence)
  4. diff    against the previous snapshot: created (new bulkId), changed (status or updatedOn
             differs), expired (missing from this answer: no confirmation polls, no stale-read or
             mass-removal rules -- what a simple script does)
  5. commit  item and event JSON texts (json.dumps), then one sqlite3 transaction: snapshot rows
             upserted/deleted and events inserted with executemany
  6. sink    the same events appended to a JSON-lines file (one write, flushed)

The snapshot lives in the sqlite table `snapshot` (bulk_id PRIMARY KEY -> status, updated_on,
item JSON). It is loaded once at start and mirrored in a dict between polls (the dict is only
updated after the transaction committed), which is faster than re-reading the table every poll.

Options: --url, --token-url, --client-id, --client-secret (or PYWATCHER_CLIENT_SECRET), --state,
--out, --once, --interval SECONDS.

Benchmark hooks (used by `bulkwatch-bench compare`, documented in BENCHMARKS.md):
  --timing      after each poll print one line `@@POLL {json}` with the wall seconds of each phase
                above (time.perf_counter) plus the process CPU seconds of the poll
  --step-stdin  instead of sleeping for --interval, wait for a line on stdin before each poll
                (the benchmark changes the upstream between polls); stop at end of input. The line
                `trim` instead runs gc.collect() and glibc malloc_trim(0) and answers `@@TRIMMED`, so
                the benchmark can reset the peak-RSS mark from the same baseline as for bulkwatch
"""

import argparse
import json
import os
import sqlite3
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    bulk_id TEXT PRIMARY KEY,
    status TEXT,
    updated_on TEXT,
    item TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    bulk_id TEXT NOT NULL,
    time TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_bulk_id ON events(bulk_id);
"""


class TokenCache:
    def __init__(self, token_url, client_id, client_secret, timeout):
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.token = None
        self.refresh_at = 0.0

    def get(self):
        if self.token is None or time.monotonic() >= self.refresh_at:
            form = urllib.parse.urlencode({
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }).encode()
            request = urllib.request.Request(
                self.token_url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
            self.token = answer["access_token"]
            self.refresh_at = time.monotonic() + 0.9 * float(answer.get("expires_in") or 900)
        return self.token


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Watcher:
    def __init__(self, args):
        self.url = args.url
        self.tokens = TokenCache(args.token_url, args.client_id, args.client_secret, args.timeout)
        self.timeout = args.timeout
        self.db = sqlite3.connect(args.state)
        self.db.executescript(SCHEMA)
        self.out_path = args.out
        # bulkId -> (status, updatedOn): the committed snapshot, mirrored in memory.
        self.previous = {
            bulk_id: (status, updated_on)
            for bulk_id, status, updated_on in self.db.execute("SELECT bulk_id, status, updated_on FROM snapshot")
        }

    def poll(self):
        timing = {}
        cpu_start = time.process_time()
        start = time.perf_counter()

        token = self.tokens.get()
        request = urllib.request.Request(
            self.url, headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read()
        mark = time.perf_counter()
        timing["fetch"] = mark - start

        listing = json.loads(body)
        del body
        current = {}
        for item in listing["content"]:
            bulk_id = item.get("bulkId")
            if bulk_id:
                current[bulk_id] = item
        del listing
        now = time.perf_counter()
        timing["decode"] = now - mark
        mark = now

        detected = now_iso()
        found = []  # (kind, bulk_id, item, previous)
        previous = self.previous
        for bulk_id, item in current.items():
            status = item.get("status")
            updated_on = item.get("updatedOn")
            old = previous.get(bulk_id)
            if old is None:
                found.append(("created", bulk_id, item, None))
            elif old[0] != status or old[1] != updated_on:
                found.append(("changed", bulk_id, item, {"status": old[0], "updatedOn": old[1]}))
        gone = [bulk_id for bulk_id in previous if bulk_id not in current]
        for bulk_id in gone:
            status, updated_on = previous[bulk_id]
            found.append(("expired", bulk_id, {"bulkId": bulk_id, "status": status, "updatedOn": updated_on}, None))
        now = time.perf_counter()
        timing["diff"] = now - mark
        mark = now

        upserts = []  # (bulk_id, status, updated_on, item JSON)
        events = []  # (type, bulk_id, time, body)
        for kind, bulk_id, item, before in found:
            if kind != "expired":
                upserts.append((bulk_id, item.get("status"), item.get("updatedOn"), json.dumps(item)))
            events.append((kind, bulk_id, detected, json.dumps(
                {"type": kind, "bulkId": bulk_id, "time": detected, "item": item, "previous": before})))
        with self.db:  # one transaction: commit on success, rollback on error
            self.db.executemany(
                "INSERT INTO snapshot (bulk_id, status, updated_on, item) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (bulk_id) DO UPDATE SET status = excluded.status, "
                "updated_on = excluded.updated_on, item = excluded.item", upserts)
            self.db.executemany("DELETE FROM snapshot WHERE bulk_id = ?", [(bulk_id,) for bulk_id in gone])
            self.db.executemany(
                "INSERT INTO events (type, bulk_id, time, body) VALUES (?, ?, ?, ?)", events)
        for bulk_id, status, updated_on, _ in upserts:
            previous[bulk_id] = (status, updated_on)
        for bulk_id in gone:
            del previous[bulk_id]
        now = time.perf_counter()
        timing["commit"] = now - mark
        mark = now

        if events and self.out_path:
            with open(self.out_path, "a", encoding="utf-8") as out:
                out.write("".join(body + "\n" for _, _, _, body in events))
        now = time.perf_counter()
        timing["sink"] = now - mark
        timing["total"] = now - start
        timing["cpu"] = time.process_time() - cpu_start
        timing["items"] = len(current)
        timing["events"] = len(events)
        return timing


def trim_heap():
    """Benchmark hook: give freed heap back to the kernel, as the bench does for bulkwatch."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def main():
    parser = argparse.ArgumentParser(description="Watch the DruID bulk-status endpoint (standard library only).")
    parser.add_argument("--url", required=True, help="bulk-status URL")
    parser.add_argument("--token-url", required=True, help="OAuth2 token URL (client credentials, form body)")
    parser.add_argument("--client-id", default="bulkwatch-demo")
    parser.add_argument("--client-secret", default=os.environ.get("PYWATCHER_CLIENT_SECRET", "demo-secret"))
    parser.add_argument("--state", default="pywatcher.db", help="sqlite state file")
    parser.add_argument("--out", default="pywatcher.jsonl", help="JSON-lines event file ('' for none)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    parser.add_argument("--once", action="store_true", help="one poll, then exit")
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step-stdin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    watcher = Watcher(args)
    next_poll = time.monotonic()
    while True:
        if args.step_stdin:
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip() == "trim":
                trim_heap()
                print("@@TRIMMED", flush=True)
                continue
        try:
            timing = watcher.poll()
            if args.timing:
                print("@@POLL " + json.dumps(timing), flush=True)
        except Exception as error:  # a failed poll changes nothing; try again next time
            print(f"poll failed: {error}", file=sys.stderr, flush=True)
            if args.once:
                sys.exit(1)
            if args.timing:
                print("@@FAILED " + json.dumps(str(error)), flush=True)
        if args.once:
            return
        if not args.step_stdin:
            next_poll += args.interval
            time.sleep(max(0.0, next_poll - time.monotonic()))


if __name__ == "__main__":
    main()
