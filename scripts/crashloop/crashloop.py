#!/usr/bin/env python3
"""Crash loop for bulkwatch (issue 6, part 3). Python 3 standard library only.

SIGKILLs `bulkwatch run` at random moments while `bulkwatch simulate` churns and a webhook receiver flaps
(accepts, answers 500, goes down), restarting it after every kill. Then it lets one last watcher catch up,
stops it gracefully and checks:

  1. journal integrity: PRAGMA integrity_check = ok, sequences 1..N, ids unique;
  2. every upstream change exactly once: the simulator's own history (GET /simulator/history) against the
     journal (`bulkwatch events --format json`): each created/changed state is one event of that kind with that
     status and updatedOn, each removal one `expired`; no event that is not in the history;
  3. every journal event delivered to the receiver (accepted with a 2xx), duplicates only with the same id
     and the same body, every signature valid;
  4. every line of the file sink (and its rotations) valid JSON, and each journaled event in it exactly once.

With --retain D the watchers also prune (each restart's first poll prunes events older than D that both sinks
delivered), so the journal no longer holds every event: the file sink, which receives every event, is then the
complete record. Checks 1-3 run against it, and each event still in the journal must equal the file's event
of that sequence; the sequences must still be 1..N without a restart after pruning.

Exit 0 when all hold; the summary (also written as JSON with --summary) says what ran and what was found.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

WEBHOOK_KEY = b"crash-loop webhook signing key!!"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()


def log(message):
    print(f"crashloop: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------------------------
# The flapping receiver


class Receiver:
    """Webhook receiver on a fixed port that accepts, answers 500 or is down, switching at random."""

    def __init__(self, port, rng):
        self.port = port
        self.rng = rng
        self.lock = threading.Lock()
        self.mode = "accept"
        self.accepted = []  # (webhook-id, body bytes)
        self.requests = 0
        self.bad_signatures = 0
        self.server = None
        self.flapping = False
        self.flaps = {"accept": 0, "500": 0, "down": 0}
        self._flapper = None

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                webhook_id = self.headers.get("webhook-id", "")
                timestamp = self.headers.get("webhook-timestamp", "")
                signatures = (self.headers.get("webhook-signature") or "").split()
                expected = "v1," + base64.b64encode(
                    hmac.new(WEBHOOK_KEY, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
                ).decode()
                with receiver.lock:
                    receiver.requests += 1
                    if expected not in signatures:
                        receiver.bad_signatures += 1
                    status = 200 if receiver.mode == "accept" else 500
                    if status == 200:
                        receiver.accepted.append((webhook_id, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler

    def up(self):
        for _ in range(100):
            try:
                server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"cannot listen on {self.port}")
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.server = server

    def down(self):
        server, self.server = self.server, None
        if server:
            server.shutdown()
            server.server_close()

    def start_flapping(self):
        self.flapping = True
        self._flapper = threading.Thread(target=self._flap, daemon=True)
        self._flapper.start()

    def stop_flapping(self):
        """Ends up listening and accepting."""
        self.flapping = False
        if self._flapper:
            self._flapper.join()
        with self.lock:
            self.mode = "accept"
        if not self.server:
            self.up()

    def _flap(self):
        while self.flapping:
            state = self.rng.choices(["accept", "500", "down"], weights=[5, 2, 2])[0]
            self.flaps[state] += 1
            if state == "down":
                self.down()
            else:
                with self.lock:
                    self.mode = "accept" if state == "accept" else "500"
                if not self.server:
                    self.up()
            time.sleep(self.rng.uniform(0.3, 2.0))


# ---------------------------------------------------------------------------------------------------------------
# The run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20; issue 6 asks 200)")
    parser.add_argument("--binary", required=True, help="path of the built bulkwatch")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--max-alive", type=float, default=1.5, help="longest life of a watcher, seconds")
    parser.add_argument("--directory", default=None, help="work directory (default: a new temporary one)")
    parser.add_argument("--summary", default=None, help="also write the summary as JSON here")
    parser.add_argument("--retain", default=None, help="run the watchers with this --retain (e.g. 2s) so they prune")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    work = args.directory or tempfile.mkdtemp(prefix="bulkwatch-crashloop-")
    os.makedirs(work, exist_ok=True)
    state = os.path.join(work, "state.db")
    events_log = os.path.join(work, "events.jsonl")
    log(f"seed {seed}, {args.kills} kills, work directory {work}")

    sim_port, hook_port = free_port(), free_port()
    base = f"http://127.0.0.1:{sim_port}"
    env = dict(os.environ)
    env.pop("BULKWATCH_TOKEN", None)
    env.update(
        {"BULKWATCH_CLIENT_SECRET": "demo-secret", "SIMULATOR_CLIENT_SECRET": "demo-secret",
         "BULKWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET})
    # States last 2-6 s (--step 4), far longer than a watcher is ever down, so every state must be seen. No
    # initial items: one that moved on before the very first poll would be a state nobody could see.
    simulator = subprocess.Popen(
        [args.binary, "simulate", "--port", str(sim_port), "--seed", str(seed % 2**32), "--initial", "0",
         "--rate", "3", "--step", "4", "--retention", "5", "--history", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "simulator.log"), "ab"), env=env)
    receiver = Receiver(hook_port, random.Random(seed + 1))
    started = time.monotonic()
    watcher_log = open(os.path.join(work, "watcher.log"), "ab")
    run_args = [
        args.binary, "run", "--endpoint", base + "/activityid/v1/user/bulk", "--token-url", base + "/oauth2/token",
        "--client-id", "bulkwatch-demo", "--state", state, "--interval", "250ms", "--timeout", "5s",
        "--sink", "file:" + events_log, "--sink", f"webhook:http://127.0.0.1:{hook_port}/hook",
        "--webhook-timeout", "2s", "--webhook-backoff-base", "100ms", "--webhook-backoff-cap", "1s",
        "--file-max-size", "262144", "--file-keep", "100",
    ] + (["--retain", args.retain] if args.retain else [])
    failures = []
    kills = 0
    unexpected_exits = []
    try:
        if not wait_listening(sim_port):
            raise RuntimeError("the simulator did not start")
        receiver.up()
        receiver.start_flapping()
        for round_number in range(args.kills):
            watcher = subprocess.Popen(run_args, stdout=subprocess.DEVNULL, stderr=watcher_log, env=env)
            time.sleep(rng.uniform(0.02, args.max_alive))
            if watcher.poll() is not None:
                unexpected_exits.append((round_number, watcher.returncode))
                continue
            watcher.send_signal(signal.SIGKILL)
            watcher.wait()
            kills += 1
            if (round_number + 1) % 25 == 0:
                log(f"{round_number + 1} kills, {time.monotonic() - started:.0f} s")
        receiver.stop_flapping()

        # A last watcher catches up; then a graceful stop.
        watcher = subprocess.Popen(run_args, stdout=subprocess.DEVNULL, stderr=watcher_log, env=env)
        settle_deadline = time.monotonic() + 90
        caught_up = False
        time.sleep(3)
        while time.monotonic() < settle_deadline:
            if delivered_everything(args.binary, state, env):
                caught_up = True
                break
            time.sleep(0.5)
        stop_millis = int(time.time() * 1000)
        watcher.send_signal(signal.SIGTERM)
        try:
            final_status = watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            final_status = "hung"
        if not caught_up:
            failures.append("the last watcher did not deliver everything within 90 s")
        if final_status != 0:
            failures.append(f"the last watcher's graceful stop exited {final_status}")
        with urllib.request.urlopen(base + "/simulator/history", timeout=30) as response:
            history = json.load(response)["changes"]
    finally:
        receiver.flapping = False
        simulator.kill()
        simulator.wait()
        receiver.down()
    elapsed = time.monotonic() - started

    summary = check(args.binary, state, events_log, history, receiver, env, stop_millis, failures, args.retain)
    summary.update({
        "seed": seed, "kills": kills, "killsRequested": args.kills, "seconds": round(elapsed, 1),
        "unexpectedExits": unexpected_exits, "receiverFlaps": receiver.flaps, "workDirectory": work,
    })
    if unexpected_exits:
        failures.append(f"watchers that exited by themselves before their kill: {unexpected_exits[:5]}")
    summary["failures"] = failures
    summary["ok"] = not failures
    if args.summary:
        with open(args.summary, "w") as out:
            json.dump(summary, out, indent=2)
    for key in ["kills", "seconds", "historyChanges", "requiredChanges", "journalEvents", "receiverRequests",
                "receiverAccepted", "receiverDuplicates", "fileLines", "integrity", "receiverFlaps"]:
        log(f"{key}: {summary.get(key)}")
    for failure in failures:
        log(f"FAILED: {failure}")
    log(f"{'PASSED' if not failures else 'FAILED'}: {kills} kills in {elapsed:.0f} s (seed {seed})")
    return 0 if not failures else 1


def delivered_everything(binary, state, env):
    result = subprocess.run([binary, "deliveries", "--state", state, "--format", "json"], capture_output=True, env=env)
    if result.returncode != 0:
        return False
    try:
        sinks = json.loads(result.stdout)
    except ValueError:
        return False
    return len(sinks) == 2 and all(sink.get("lag") == 0 and sink.get("deadLetters") == 0 for sink in sinks)


def event_key(kind, subject, data):
    if kind == "expired":
        return f"expired {subject}"
    return f"{kind} {subject} {data.get('status')} {data.get('updatedOn')}"


def read_file_sink(events_log, failures):
    """Every line of the file sink and its rotations, oldest first, as parsed events."""
    paths = [events_log] + [f"{events_log}.{n}" for n in range(1, 101)]
    files = sorted((p for p in paths if os.path.exists(p)), key=lambda p: -int(p.rsplit(".", 1)[1]) if p != events_log else 0)
    lines = []
    for path in files:
        with open(path, "rb") as handle:
            text = handle.read()
        if text and not text.endswith(b"\n"):
            failures.append(f"{os.path.basename(path)} does not end with a complete line")
        lines.extend(line for line in text.split(b"\n") if line)
    events = []
    invalid = 0
    for line in lines:
        try:
            event = json.loads(line)
            int(event["sequence"])
            events.append(event)
        except (ValueError, KeyError, TypeError):
            invalid += 1
    if invalid:
        failures.append(f"{invalid} file sink lines are not valid JSON events")
    return events, len(files) - 1


def check(binary, state, events_log, history, receiver, env, stop_millis, failures, retain=None):
    summary = {}
    # 1. Journal integrity.
    connection = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    connection.close()
    summary["integrity"] = integrity
    if integrity != "ok":
        failures.append(f"integrity_check: {integrity}")
    result = subprocess.run([binary, "events", "--state", state, "--format", "json"], capture_output=True, env=env)
    if result.returncode != 0:
        failures.append(f"bulkwatch events exited {result.returncode}: {result.stderr.decode()[:200]}")
    journal = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
    file_events, rotations = read_file_sink(events_log, failures)
    summary["fileLines"] = len(file_events)
    summary["fileRotations"] = rotations
    summary["retainedEvents"] = len(journal)
    if retain:
        # Pruning removed delivered events from the journal: the file sink holds them all.
        by_sequence = {int(event["sequence"]): event for event in file_events}
        differing = [event["sequence"] for event in journal if by_sequence.get(int(event["sequence"])) != event]
        if differing:
            failures.append(f"{len(differing)} retained journal events differ from (or are missing in) the file "
                            f"sink, e.g. sequence {differing[:3]}")
        summary["prunedEvents"] = len(file_events) - len(journal)
        if summary["prunedEvents"] <= 0:
            failures.append("--retain was given but no event was pruned")
        journal = file_events
    summary["journalEvents"] = len(journal)
    sequences = [int(event["sequence"]) for event in journal]
    if sequences != list(range(1, len(journal) + 1)):
        failures.append("journal sequences are not 1..N")
    ids = [event["id"] for event in journal]
    if len(set(ids)) != len(ids):
        failures.append(f"{len(ids) - len(set(ids))} repeated event ids in the journal")

    # 2. Every upstream change exactly once. A change in the last 2 s before the stop may not have been
    # polled (or, for a removal, confirmed) yet: it is not required, but if journaled it must still match.
    cutoff = stop_millis - 2000
    expected = {}
    for change in history:
        kind = {"created": "created", "changed": "changed", "removed": "expired"}[change["kind"]]
        key = event_key(kind, change["bulkId"], change)
        expected.setdefault(key, change["at"] <= cutoff)
    journaled = {}
    for event in journal:
        key = event_key(event["type"].removeprefix("bulk."), event["subject"], event.get("data") or {})
        journaled[key] = journaled.get(key, 0) + 1
    summary["historyChanges"] = len(history)
    summary["requiredChanges"] = sum(1 for required in expected.values() if required)
    missing = [key for key, required in expected.items() if required and key not in journaled]
    false_events = [key for key in journaled if key not in expected]
    repeated = [key for key, count in journaled.items() if count > 1]
    summary["missing"], summary["falseEvents"], summary["repeated"] = len(missing), len(false_events), len(repeated)
    if missing:
        failures.append(f"{len(missing)} upstream changes not journaled, e.g. {missing[:3]}")
    if false_events:
        failures.append(f"{len(false_events)} journal events match no upstream change, e.g. {false_events[:3]}")
    if repeated:
        failures.append(f"{len(repeated)} upstream changes journaled more than once, e.g. {repeated[:3]}")

    # 3. Every journal event delivered; duplicates only with the same id (and the same body).
    bodies = {event["id"]: event for event in journal}
    accepted = receiver.accepted
    summary["receiverRequests"] = receiver.requests
    summary["receiverAccepted"] = len(accepted)
    received_ids = [webhook_id for webhook_id, _ in accepted]
    summary["receiverDuplicates"] = len(received_ids) - len(set(received_ids))
    undelivered = [i for i in ids if i not in set(received_ids)]
    if undelivered:
        failures.append(f"{len(undelivered)} journal events never accepted by the receiver")
    ids_per_event = {}
    for webhook_id, body in accepted:
        try:
            event = json.loads(body)
        except ValueError:
            failures.append(f"receiver got a body that is not JSON (id {webhook_id})")
            continue
        if event.get("id") != webhook_id:
            failures.append(f"webhook-id {webhook_id} differs from the body's id {event.get('id')}")
        if webhook_id not in bodies:
            failures.append(f"receiver got an event the journal does not hold: {webhook_id}")
        elif event != bodies[webhook_id]:
            failures.append(f"event {webhook_id} arrived with a body that differs from the journal's")
        key = event_key(event.get("type", "").removeprefix("bulk."), event.get("subject"), event.get("data") or {})
        ids_per_event.setdefault(key, set()).add(webhook_id)
    relabelled = [key for key, seen in ids_per_event.items() if len(seen) > 1]
    if relabelled:
        failures.append(f"{len(relabelled)} events delivered under more than one id, e.g. {relabelled[:3]}")
    if receiver.bad_signatures:
        failures.append(f"{receiver.bad_signatures} webhook requests with an invalid signature")

    # 4. The file sink: each journaled event exactly once, in order (every line was parsed above).
    file_sequences = [int(event["sequence"]) for event in file_events]
    if file_sequences != sequences:
        failures.append(f"the file sink does not hold each journaled event exactly once, in order "
                        f"({len(file_sequences)} lines for {len(sequences)} events)")
    return summary


if __name__ == "__main__":
    sys.exit(main())
