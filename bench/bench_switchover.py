#!/usr/bin/env python3
"""bench/bench_switchover.py: switchover and failover under load, tandem beside
PostgreSQL 15, in one run (issue 4; docs/BENCHMARKS.md "Switchover and
failover").

Question: how long are writes paused by a planned switchover (tandem
switchover) under continuous load from 16 writers, as the nodes measure it and
as the writers see it, and how long from `tandem failover` to the first
acknowledged write on the new primary after the primary is killed? Beside them,
the same moves done the PostgreSQL way on a primary with a synchronous
streaming standby: stop the primary, promote the standby, repoint the old
primary with pg_rewind and start it as a standby of the new one. Targets:
switchover pause p99 under 50 ms, failover under 1 s.

Happy path:
1. tandem (reusing tests/loopback/test_switchover.py's cluster: `tandem ca`,
   `tandem init` n1 n2 n3 on 127.0.0.1 with TLS links, min_copies 2, 16
   writer threads each feeding one `tandem append --node DIR` over a pipe at
   --rate records/s, spread over the three nodes' local sockets; a backup
   forwards to the primary). Every acknowledgement is timestamped as its line
   arrives.
   (a) --switchovers (100) `tandem switchover --node <primary> --to <next>
       --json`, round robin, each once the primary sees the target's link live
       and every node names the new primary. Per switchover: the pause the
       nodes measured (the JSON answer's pause_ms; `tandem history --json` of
       every node is read at the end and compared: a difference is printed
       as a WARNING) and the
       pause the writers saw: the longest gap between two consecutive
       acknowledgements (of any writer) that overlaps the command. Failed
       writes: records not acknowledged, and writer processes that failed.
   (b) --failovers (5) times: SIGKILL the primary under load; `tandem
       failover --dry-run` on a backup until the old primary's silence allows
       a failover (failover_silence_ms: 4 s in tandemd), the most caught-up
       backup read from its table; then time `tandem failover --node B --to B
       --json` from its start to the first acknowledged write after it (any
       writer: a write can only be acknowledged by the new primary then).
       Writers here are clients with a 2 s write timeout: a writer whose node
       is gone, or whose oldest write is unacknowledged for 2 s, starts a new
       `tandem append` on a node that is up (not acknowledged: counted, not a
       failure of the benchmark). The killed node is restarted and must rejoin
       as a backup of the new primary before the next round.
   At the end: every node at the same durable last LSN with the same chain
   hash, and the final primary holds every acknowledged write (queries per
   customer); the daemons exit 0 on SIGTERM.
2. PostgreSQL 15: pg1 primary (initdb, wal_log_hints=on for pg_rewind,
   fsync and synchronous_commit on, wal_retrieve_retry_interval=100ms (the
   default 5 s can hold a promotion that long), TLS 1.3 replication links
   with a throw-away certificate), pg2 made by pg_basebackup and streaming as a
   synchronous standby (synchronous_standby_names = the other node). 16
   writer threads (libpq through ctypes: one connection each, over the unix
   socket like tandem's writers, to "host=RUN,RUN port=P1,P2
   target_session_attrs=read-write", so that they follow the primary) each
   insert one message row per transaction at --rate rows/s; a failed insert
   is counted and the writer reconnects (every 10 ms while no server takes
   writes).
   (a) --pg-switchovers (10): fast shutdown of the primary (SIGINT to its
       postmaster, wait until postmaster.pid is gone), `pg_ctl promote` of the
       standby; the pause the writers saw as for tandem. Then the repoint:
       CHECKPOINT on the new primary, pg_rewind of the old one against it,
       start it as a standby (standby.signal, primary_conninfo), wait until it
       streams, set the new primary's synchronous_standby_names to it and wait
       until it is 'sync'. Between the promotion and that point the new
       primary commits with one copy (see docs/BENCHMARKS.md).
   (b) --pg-failovers (5): SIGKILL of the primary's postmaster and all its
       processes, 0.5 s (the decision), `pg_ctl promote` of the standby: time
       from the promote
       to the first committed insert; then the repoint as above (pg_rewind
       runs the crash recovery of the old primary first).
   At the end: the final primary holds every acknowledged row.
3. Print a table and `RESULT <name> <measure> <value>` lines: each tandem
   figure beside PostgreSQL's and their ratio, and whether the targets hold.

Failure modes: a missing binary or PostgreSQL tool, a cluster that does not
form, a switchover or failover not done, a node that does not rejoin, a check
at the end that fails: one line on stderr ("bench_switchover: ..."), the
daemons' trace tails, exit status 1 (the work directory is kept). Bad usage:
exit status 2.

Close: every tandemd and PostgreSQL server started here is stopped (by process
id; PostgreSQL with pg_ctl stop -m immediate), also on failure or interrupt;
the work directory is removed unless --keep or a failure.
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "loopback"))
import test_switchover as ts  # noqa: E402 (the cluster, nodes and writers of the loopback suite)

PG_BIN = "/usr/lib/postgresql/15/bin"
CLIENT_TIMEOUT_S = 2.0  # failover phase: a writer gives up on a write after this
RETRY_S = 0.01  # a writer's pause before it connects again


class BenchError(Exception):
    pass


def say(msg):
    print(msg, flush=True)


def pct(values, p):
    """Nearest rank, as the other benchmarks."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int((len(s) - 1) * p / 100.0 + 0.5))]


def writer_gap(acks, t_start, t_end):
    """The longest gap between two consecutive acknowledgements (sorted
    monotonic times of every writer) that overlaps [t_start, t_end]; None
    when no acknowledgement follows t_end."""
    best = None
    prev = None
    for t in acks:
        if prev is not None and t > t_start and prev < t_end:
            gap = t - prev
            best = gap if best is None or gap > best else best
        if t > t_end and prev is not None and prev >= t_end:
            break
        prev = t
    return best


def baseline_gaps(acks, t_start, t_end, width):
    """writer_gap() of back-to-back windows of the given width in [t_start,
    t_end], a stretch with no switchover: what the writers' own noise gives
    for windows as long as the switchovers' (ms)."""
    out = []
    width = max(width, 0.001)
    t = t_start
    while t + width <= t_end:
        gap = writer_gap(acks, t, t + width)
        if gap is not None:
            out.append(gap * 1000)
        t += width
    return out


# ---- tandem ------------------------------------------------------------------------------


class FailoverWriter(ts.Writer):
    """A writer of the failover phase: a client that goes to a node that is up
    (its own first) and gives up on a write unacknowledged for
    CLIENT_TIMEOUT_S, then starts again."""

    def run(self):
        home = self.node
        names = list(ts.NODES)
        while not self.stop.is_set():
            node = None
            for k in range(len(names)):
                cand = home if k == 0 else self.t.nodes[names[(names.index(home.name) + k) %
                                                              len(names)]]
                if cand.up and not cand.paused:
                    node = cand
                    break
            if node is None:
                time.sleep(0.05)
                continue
            self.node = node
            errf = tempfile.TemporaryFile()
            proc = subprocess.Popen([self.t.tandem, "append", "--node", node.dir],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
            if self.feed(proc, errf, timeout_s=CLIENT_TIMEOUT_S) != 0:
                time.sleep(RETRY_S)

    def exit_line(self, rc, first, timed_out):
        return "client timeout" if timed_out else first


class TandemBench(ts.Test):
    """The loopback suite's cluster (setup, nodes, writers, commands), with
    every acknowledgement timestamped."""

    def __init__(self, opts):
        super().__init__(opts)
        self.ack_log = []  # (monotonic time, lsn) of every acknowledgement

    def check(self, name, ok, detail=""):
        if not ok:
            say("# FAIL " + name + (": " + detail if detail else ""))
            self.failures.append(name + (": " + detail if detail else ""))
        return ok

    def record_ack(self, lsn, mid):
        now = time.monotonic()
        with self.lock:
            if lsn in self.acked:
                self.twice.append(lsn)
            self.acked[lsn] = mid
            self.ack_log.append((now, lsn))

    def acks_sorted(self):
        with self.lock:
            return sorted(t for t, _ in self.ack_log)

    def require(self, name, ok, detail=""):
        if not self.check(name, ok, detail):
            raise BenchError("tandem: " + name + (": " + detail if detail else ""))

    def names_primary(self, target, seconds):
        deadline = time.monotonic() + seconds
        named = {}
        while time.monotonic() < deadline:
            named = {n: (node.status() or {}).get("primary") for n, node in self.nodes.items()
                     if node.up}
            if all(p == target for p in named.values()):
                return True
            time.sleep(0.02)
        return False

    # ---- (a) switchovers ---------------------------------------------------------------

    def bench_switchovers(self):
        say("# tandem (a): %d switchovers under %d writers at %g records/s each" %
            (self.opts.switchovers, self.opts.writers, self.rate))
        self.writers_start()
        t_base = time.monotonic()
        time.sleep(3.5)
        t_base_end = time.monotonic()
        primary = self.primary_name()
        runs = []  # (t_start, t_end, pause_ms, epoch)
        retries = 0
        while len(runs) < self.opts.switchovers:
            target = ts.NODES[(ts.NODES.index(primary) + 1) % len(ts.NODES)]
            self.wait_live(primary, 10, only=target)
            t_start = time.monotonic()
            rc, doc, err = self.command(["switchover", "--node", self.nodes[primary].dir,
                                         "--to", target])
            t_end = time.monotonic()
            if rc != 0 and doc and doc.get("refusal") in ("target_down", "busy", "in_progress",
                                                          "target_lagging") and \
                    retries < 5 * self.opts.switchovers:
                retries += 1
                time.sleep(0.05)
                continue
            self.require("switchover %d: %s -> %s done" % (len(runs) + 1, primary, target),
                         rc == 0 and doc is not None and doc.get("outcome") == "done",
                         "exit %d: %s %s" % (rc, json.dumps(doc), err))
            runs.append((t_start, t_end, doc.get("pause_ms"), doc.get("epoch")))
            self.require("switchover %d: every node names %s" % (len(runs), target),
                         self.names_primary(target, 5))
            primary = target
        time.sleep(1.0)
        failed, sent, acked = self.writers_stop()
        acks = self.acks_sorted()
        gaps = []
        for t_start, t_end, _, _ in runs:
            gap = writer_gap(acks, t_start, t_end)
            self.require("writes acknowledged after a switchover", gap is not None)
            gaps.append(gap * 1000)
        width = pct([r[1] - r[0] for r in runs], 50)
        return {
            "runs": runs,
            "pauses": [r[2] for r in runs],
            "gaps": gaps,
            "baseline": baseline_gaps(acks, t_base + 0.5, t_base_end, width),
            "retries": retries,
            "sent": sent,
            "acked": acked,
            "failed": sent - acked,
            "failed_processes": len([f for f in failed if f[0] != 0]),
            "failed_detail": failed[:5],
            "seconds": runs[-1][1] - runs[0][0] if runs else 0,
        }

    # ---- (b) failovers -----------------------------------------------------------------

    def failover_writers_start(self):
        self.writers = [FailoverWriter(self, i, self.nodes[ts.NODES[i % len(ts.NODES)]])
                        for i in range(self.opts.writers)]
        for w in self.writers:
            w.start()

    def most_caught_up(self, backups, seconds):
        """Dry runs on a backup until the old primary's silence allows a
        failover; the most caught-up backup of the probe's table."""
        deadline = time.monotonic() + seconds
        doc = None
        while time.monotonic() < deadline:
            rc, doc, err = self.command(["failover", "--dry-run", "--node",
                                         self.nodes[backups[0]].dir, "--to", backups[0]])
            if doc is not None and doc.get("refusal") != "primary_alive":
                break
            time.sleep(0.2)
        self.require("failover dry run answers", doc is not None and
                     doc.get("outcome") == "dry run", json.dumps(doc))
        rows = {n["id"]: n for n in doc.get("nodes", []) if n.get("id") in backups}
        self.require("the dry run's table has every backup",
                     all(rows.get(b, {}).get("answered") for b in backups), json.dumps(rows))
        return max(backups, key=lambda b: (rows[b]["last_epoch"], rows[b]["durable_lsn"]))

    def bench_failovers(self):
        say("# tandem (b): %d failovers after SIGKILL of the primary, under %d writers" %
            (self.opts.failovers, self.opts.writers))
        self.failover_writers_start()
        time.sleep(2.0)
        rounds = []
        for k in range(self.opts.failovers):
            primary = self.primary_name()
            backups = [n for n in ts.NODES if n != primary]
            self.require("round %d: the primary sees both backups live" % (k + 1),
                         self.wait_live(primary, 30))
            self.require("round %d: writes acknowledged before the kill" % (k + 1),
                         self.acks_resume(20))
            old = self.nodes[primary]
            with self.lock:
                max_lsn_before = max(self.acked) if self.acked else 0
            old.kill()
            t_kill = time.monotonic()
            best = self.most_caught_up(backups, 30)
            t_chosen = time.monotonic()
            attempts = 0
            while True:
                attempts += 1
                t0 = time.monotonic()
                rc, doc, err = self.command(["failover", "--node", self.nodes[best].dir,
                                             "--to", best])
                t1 = time.monotonic()
                if rc == 0 or doc is None or doc.get("refusal") != "primary_alive" or \
                        attempts > 50:
                    break
                time.sleep(0.2)
            self.require("round %d: failover to %s done" % (k + 1, best),
                         rc == 0 and doc is not None and doc.get("outcome") == "done",
                         "exit %d: %s %s" % (rc, json.dumps(doc), err))
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                first = self.first_ack_after(t0)
                if first is None:
                    time.sleep(0.005)
            self.require("round %d: a write acknowledged after the failover" % (k + 1),
                         first is not None)
            t_first, lsn_first = first
            self.require("round %d: the first acknowledged LSN is new (%d > %d)" %
                         (k + 1, lsn_first, max_lsn_before), lsn_first > max_lsn_before)
            rounds.append({
                "old": primary, "new": best, "attempts": attempts,
                "to_first_ack_ms": (t_first - t0) * 1000,
                "command_ms": (t1 - t0) * 1000,
                "kill_to_first_ack_ms": (t_first - t_kill) * 1000,
                "kill_to_chosen_ms": (t_chosen - t_kill) * 1000,
            })
            say("#   round %d: SIGKILL %s, failover to %s: command %.0f ms, first acknowledged "
                "write %.0f ms after its start (%.1f s after the kill; %d attempt(s))" %
                (k + 1, primary, best, rounds[-1]["command_ms"], rounds[-1]["to_first_ack_ms"],
                 rounds[-1]["kill_to_first_ack_ms"] / 1000, attempts))
            old.start()
            deadline = time.monotonic() + 30
            sdoc = None
            while time.monotonic() < deadline:
                sdoc = old.status()
                if sdoc and sdoc.get("role") == "backup" and sdoc.get("primary") == best:
                    break
                time.sleep(0.1)
            self.require("round %d: %s rejoined as a backup of %s" % (k + 1, primary, best),
                         sdoc is not None and sdoc.get("role") == "backup" and
                         sdoc.get("primary") == best, json.dumps(sdoc)[:300] if sdoc else "")
        failed, sent, acked = self.writers_stop()
        return {"rounds": rounds, "sent": sent, "acked": acked, "not_acked": sent - acked,
                "restarts": len(failed)}

    def first_ack_after(self, t0):
        """(time, lsn) of the first acknowledgement after t0, or None."""
        with self.lock:
            after = [a for a in self.ack_log if a[0] > t0]
        return min(after) if after else None

    # ---- the end -----------------------------------------------------------------------

    def history_pauses(self):
        pauses = {}
        for node in self.nodes.values():
            r = ts.run([self.tandem, "history", "--node", node.dir, "--json"])
            self.require("tandem history --node %s --json" % node.name, r.returncode == 0,
                         r.stderr.strip())
            for e in json.loads(r.stdout).get("epochs", []):
                if e.get("cause") == "command" and e.get("pause_ms"):
                    pauses[e["epoch"]] = max(pauses.get(e["epoch"], 0), e["pause_ms"])
        return pauses

    def end_checks(self):
        selfs = self.converge()
        self.require("every node at the same durable last LSN", selfs is not None)
        hashes = {s.get("chain_hash") for s in selfs.values()}
        self.require("chain hashes equal on every node", len(hashes) == 1 and None not in hashes,
                     str(hashes))
        self.require("no LSN acknowledged twice", not self.twice, str(self.twice[:10]))
        with self.lock:
            acked = dict(self.acked)
        primary = self.nodes[self.primary_name()]
        held = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            held = self.held(primary)
            if held is None or all(held.get(lsn) == mid for lsn, mid in acked.items()):
                break
            time.sleep(1)
        lost = [lsn for lsn, mid in acked.items() if held is None or held.get(lsn) != mid]
        return len(acked), len(lost)

    def stop_all(self):
        """SIGTERM every tandemd: each finishes the requests in flight first,
        which may take up to a write's deadline (a write forwarded to a primary
        that died waits for it); a daemon that has not exited 10 s after that
        is a failure."""
        stops = {}
        for node in self.nodes.values():
            if node.proc is not None:
                node.up = False
                node.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        for name, node in self.nodes.items():
            if node.proc is None:
                continue
            rc = ts.cluster_lib.wait_or_kill(
                node.proc, max(1, ts.DEADLINE_MS / 1000 + 10 - (time.monotonic() - t0)))
            node.proc = None
            stops[name] = time.monotonic() - t0
            self.require("%s: tandemd exits 0 on SIGTERM" % name, rc == 0, str(rc))
        return stops


def run_tandem(opts, work):
    tempfile.tempdir = work  # The suite's work directory goes under ours.
    t = TandemBench(opts)
    tempfile.tempdir = None
    out = {}
    try:
        t.setup()
        if t.failures:
            raise BenchError("tandem: " + t.failures[0])
        out["switchover"] = t.bench_switchovers()
        out["history"] = t.history_pauses()
        if opts.failovers > 0:
            out["failover"] = t.bench_failovers()
        out["writes"], out["lost"] = t.end_checks()
        out["stops"] = t.stop_all()
        if t.failures:
            raise BenchError("tandem: " + t.failures[0])
    except BaseException:
        opts_keep = t.opts.keep
        t.opts.keep = True
        for node in t.nodes.values():
            sys.stderr.write("bench_switchover: last lines of %s's trace:\n%s\n" %
                             (node.name, node.tail(15)))
        t.teardown()
        t.opts.keep = opts_keep
        raise
    t.teardown()
    return out


# ---- PostgreSQL ------------------------------------------------------------------------------


class Libpq:
    CONNECTION_OK = 0
    PGRES_COMMAND_OK = 1
    PGRES_TUPLES_OK = 2

    def __init__(self):
        name = ctypes.util.find_library("pq") or "libpq.so.5"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise BenchError("libpq not found (%s): install libpq5 (postgresql-client-15)" % e)
        lib.PQconnectdb.restype = ctypes.c_void_p
        lib.PQconnectdb.argtypes = [ctypes.c_char_p]
        lib.PQstatus.restype = ctypes.c_int
        lib.PQstatus.argtypes = [ctypes.c_void_p]
        lib.PQerrorMessage.restype = ctypes.c_char_p
        lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
        lib.PQfinish.restype = None
        lib.PQfinish.argtypes = [ctypes.c_void_p]
        lib.PQexec.restype = ctypes.c_void_p
        lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.PQexecParams.restype = ctypes.c_void_p
        lib.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.PQresultStatus.restype = ctypes.c_int
        lib.PQresultStatus.argtypes = [ctypes.c_void_p]
        lib.PQresultErrorMessage.restype = ctypes.c_char_p
        lib.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
        lib.PQntuples.restype = ctypes.c_int
        lib.PQntuples.argtypes = [ctypes.c_void_p]
        lib.PQgetvalue.restype = ctypes.c_char_p
        lib.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.PQclear.restype = None
        lib.PQclear.argtypes = [ctypes.c_void_p]
        self.notice_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
        lib.PQsetNoticeProcessor.restype = ctypes.c_void_p
        lib.PQsetNoticeProcessor.argtypes = [ctypes.c_void_p, self.notice_type, ctypes.c_void_p]
        # The servers' notices (a fast shutdown's "terminating connection")
        # are expected here: the failed insert is counted, not printed.
        self.quiet = self.notice_type(lambda arg, message: None)
        self.lib = lib

    def connect(self, conninfo):
        conn = self.lib.PQconnectdb(conninfo.encode())
        if not conn:
            return None, "out of memory"
        if self.lib.PQstatus(conn) != self.CONNECTION_OK:
            err = (self.lib.PQerrorMessage(conn) or b"").decode("utf-8", "replace").strip()
            self.lib.PQfinish(conn)
            return None, err
        self.lib.PQsetNoticeProcessor(conn, self.quiet, None)
        return conn, None

    def execute(self, conn, sql, params=None):
        """(rows, error): rows a list of tuples of str."""
        if params is None:
            res = self.lib.PQexec(conn, sql.encode())
        else:
            values = (ctypes.c_char_p * len(params))(*[p.encode() for p in params])
            res = self.lib.PQexecParams(conn, sql.encode(), len(params), None, values, None, None,
                                        0)
        if not res:
            return None, (self.lib.PQerrorMessage(conn) or b"").decode("utf-8", "replace")
        try:
            status = self.lib.PQresultStatus(res)
            if status not in (self.PGRES_COMMAND_OK, self.PGRES_TUPLES_OK):
                return None, (self.lib.PQresultErrorMessage(res) or b"").decode(
                    "utf-8", "replace").strip()
            rows = []
            if status == self.PGRES_TUPLES_OK:
                n = self.lib.PQntuples(res)
                rows = [(self.lib.PQgetvalue(res, i, 0) or b"").decode() for i in range(n)]
            return rows, None
        finally:
            self.lib.PQclear(res)

    def finish(self, conn):
        self.lib.PQfinish(conn)


PG_SCHEMA = """
CREATE TYPE destination AS ENUM ('delivered', 'quarantined');
CREATE TYPE classification AS ENUM ('clean', 'spam', 'virus', 'banned_file', 'bad_header',
                                     'oversized');
CREATE TABLE message (
    lsn bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    time_ns bigint NOT NULL,
    size bigint NOT NULL,
    destination destination NOT NULL,
    classification classification NOT NULL,
    threat text NOT NULL,
    recipient text NOT NULL,
    spam_score numeric(10, 3) NOT NULL,
    message_id text NOT NULL,
    sender text NOT NULL,
    relay_ip inet NOT NULL,
    subject bytea NOT NULL
);
CREATE INDEX message_message_id ON message (message_id);
CREATE INDEX message_customer_time ON message (customer_id, time_ns);
CREATE INDEX message_recipient ON message (customer_id, recipient, time_ns);
CREATE INDEX message_sender ON message (customer_id, sender, time_ns);
"""

PG_INSERT = ("INSERT INTO message (customer_id, time_ns, size, destination, classification, "
             "threat, recipient, spam_score, message_id, sender, relay_ip, subject) VALUES "
             "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING lsn")


class PgWriter(threading.Thread):
    """One connection that follows the primary (target_session_attrs =
    read-write), one INSERT per transaction at a steady rate; a failed
    insert is counted and the connection made again."""

    def __init__(self, pg, wid):
        super().__init__(daemon=True)
        self.pg = pg
        self.wid = wid
        self.stop = threading.Event()
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.errors = []

    def run(self):
        pq = self.pg.pq
        conn = None
        interval = 1.0 / self.pg.rate
        next_t = time.monotonic()
        k = 0
        while not self.stop.is_set():
            if conn is None:
                conn, err = pq.connect(self.pg.writer_conninfo)
                if conn is None:
                    time.sleep(RETRY_S)
                    continue
            now = time.monotonic()
            if now < next_t:
                time.sleep(min(next_t - now, 0.05))
                continue
            next_t = max(next_t + interval, now - 1.0)
            k += 1
            self.sent += 1
            rows, err = pq.execute(conn, PG_INSERT, self.pg.row(self.wid, k))
            if rows:
                self.pg.record_ack(int(rows[0]))
                self.acked += 1
            else:
                self.failed += 1
                if len(self.errors) < 3:
                    self.errors.append(err.splitlines()[0] if err else "?")
                pq.finish(conn)
                conn = None
        if conn is not None:
            pq.finish(conn)


class PgBench:
    def __init__(self, opts, work, templates):
        self.opts = opts
        self.rate = opts.rate
        self.work = os.path.join(work, "pg")
        self.run_dir = os.path.join(self.work, "run")
        self.templates = templates
        self.pq = Libpq()
        self.lock = threading.Lock()
        self.acks = []  # (time, lsn)
        self.writers = []
        self.as_pg = []
        self.nodes = {}  # name -> {"dir", "port", "log"}
        self.started = set()

    # ---- helpers -----------------------------------------------------------------------

    def tool(self, name):
        return os.path.join(self.opts.pg_bin, name)

    def pgrun(self, args, timeout=120, check=True, what=None):
        r = subprocess.run(self.as_pg + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        if check and r.returncode != 0:
            sys.stderr.write(r.stdout)
            raise BenchError("PostgreSQL: %s failed (exit %d): %s" %
                             (what or os.path.basename(args[0]), r.returncode,
                              r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""))
        return r

    def sql(self, node, statement, db="bench"):
        conn, err = self.pq.connect("host=%s port=%d user=postgres dbname=%s" %
                                    (self.run_dir, self.nodes[node]["port"], db))
        if conn is None:
            raise BenchError("PostgreSQL: cannot connect to %s: %s" % (node, err))
        try:
            rows, err = self.pq.execute(conn, statement)
            if rows is None:
                raise BenchError("PostgreSQL: %s on %s: %s" % (statement.split()[0], node, err))
            return rows
        finally:
            self.pq.finish(conn)

    def record_ack(self, lsn):
        now = time.monotonic()
        with self.lock:
            self.acks.append((now, lsn))

    def acks_sorted(self):
        with self.lock:
            return sorted(t for t, _ in self.acks)

    def first_ack_after(self, t0, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                after = [t for t, _ in self.acks if t > t0]
            if after:
                return min(after)
            time.sleep(0.002)
        return None

    def row(self, wid, k):
        rec = self.templates[(wid * 7919 + k) % len(self.templates)]
        subject = rec.get("subject")
        if subject is not None:
            raw = subject.encode()
        else:
            import base64
            raw = base64.b64decode(rec.get("subject_base64", ""))
        return [str(rec["customer_id"]), str(time.time_ns()), str(rec["size"]),
                rec["destination"], rec["classification"], rec["threat"], rec["recipient"],
                str(rec["spam_score"]),
                "<w%d.k%d.%s" % (wid, k, rec["message_id"][1:]), rec["sender"], rec["relay_ip"],
                "\\x" + raw.hex()]

    # ---- servers -----------------------------------------------------------------------

    def node_conf(self, name, standby_of=None, sync_to=None):
        node = self.nodes[name]
        lines = ["# bench_switchover: this node's settings (rewritten after pg_basebackup "
                 "and pg_rewind, which copy the source's files)",
                 "port = %d" % node["port"],
                 "synchronous_standby_names = '%s'" % (sync_to or "")]
        if standby_of is not None:
            lines.append("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres "
                         "sslmode=require application_name=%s'" %
                         (self.nodes[standby_of]["port"], name))
        path = os.path.join(node["dir"], "node.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        signal_file = os.path.join(node["dir"], "standby.signal")
        if standby_of is not None:
            open(signal_file, "w").close()
        elif os.path.exists(signal_file):
            os.unlink(signal_file)
        auto = os.path.join(node["dir"], "postgresql.auto.conf")
        with open(auto, "w") as f:
            f.write("# Do not edit: ALTER SYSTEM (empty here: bench_switchover uses node.conf)\n")
        self.chown(node["dir"])

    def chown(self, path):
        if self.as_pg:
            subprocess.run(["chown", "-R", "postgres:", path], check=True)

    def start(self, name):
        node = self.nodes[name]
        self.started.add(name)
        self.pgrun([self.tool("pg_ctl"), "-D", node["dir"], "-l", node["log"], "-w", "-t", "60",
                    "start"], what="pg_ctl start " + name)

    def postmaster_pid(self, name):
        with open(os.path.join(self.nodes[name]["dir"], "postmaster.pid")) as f:
            return int(f.readline())

    def fast_stop(self, name):
        """pg_ctl stop -m fast without pg_ctl's 100 ms polling: SIGINT to the
        postmaster, then wait until it removed postmaster.pid."""
        pid_file = os.path.join(self.nodes[name]["dir"], "postmaster.pid")
        os.kill(self.postmaster_pid(name), signal.SIGINT)
        deadline = time.monotonic() + 60
        while os.path.exists(pid_file):
            if time.monotonic() > deadline:
                raise BenchError("PostgreSQL: %s did not stop within 60 s" % name)
            time.sleep(0.001)

    def kill(self, name):
        """SIGKILL of the postmaster and every process of it, by id."""
        pid = self.postmaster_pid(name)
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    children.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        for p in [pid] + children:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Until every one is gone (reaped): pg_rewind's crash recovery refuses
        # a data directory whose postmaster.pid names a process that exists.
        deadline = time.monotonic() + 30
        for p in [pid] + children:
            while os.path.exists("/proc/%d" % p):
                if time.monotonic() > deadline:
                    raise BenchError("PostgreSQL: process %d of %s still exists 30 s after "
                                     "SIGKILL" % (p, name))
                time.sleep(0.001)

    def promote(self, name):
        """pg_ctl promote without waiting: the writers see when it takes writes."""
        self.pgrun([self.tool("pg_ctl"), "-D", self.nodes[name]["dir"], "-W", "promote"],
                   what="pg_ctl promote " + name)

    def replication_state(self, primary, standby):
        rows = self.sql(primary, "SELECT state || '/' || sync_state FROM pg_stat_replication "
                        "WHERE application_name = '%s'" % standby, db="postgres")
        return rows[0] if rows else ""

    def wait_state(self, primary, standby, want, seconds=60):
        deadline = time.monotonic() + seconds
        state = ""
        while time.monotonic() < deadline:
            state = self.replication_state(primary, standby)
            if state in want:
                return state
            time.sleep(0.01)
        raise BenchError("PostgreSQL: %s is '%s' on %s after %d s, not %s" %
                         (standby, state, primary, seconds, " or ".join(want)))

    def setup(self):
        for tool in ("initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "postgres"):
            if not os.access(self.tool(tool), os.X_OK):
                raise BenchError("%s not found (install postgresql-15: scripts/bench-setup)" %
                                 self.tool(tool))
        if shutil.which("openssl") is None:
            raise BenchError("openssl not found (the replication links' certificate)")
        if os.getuid() == 0:
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        os.makedirs(self.run_dir)
        if len(self.run_dir) + 18 > 107:
            raise BenchError("work directory path too long for unix sockets: " + self.run_dir)
        self.chown(self.work)
        ports = ts.free_ports(2)
        for name, port in zip(("pg1", "pg2"), ports):
            self.nodes[name] = {"dir": os.path.join(self.work, name), "port": port,
                                "log": os.path.join(self.work, name + ".log")}
        pg1 = self.nodes["pg1"]["dir"]
        self.pgrun([self.tool("initdb"), "-D", pg1, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C"], what="initdb")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-keyout", os.path.join(pg1, "server.key"), "-out",
                            os.path.join(pg1, "server.crt")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise BenchError("openssl req failed: " + r.stdout.strip()[-200:])
        os.chmod(os.path.join(pg1, "server.key"), 0o600)
        with open(os.path.join(pg1, "postgresql.conf"), "a") as f:
            f.write("\n".join([
                "# bench/bench_switchover.py",
                "listen_addresses = '127.0.0.1'",
                "unix_socket_directories = '%s'" % self.run_dir,
                "max_connections = 100",
                "fsync = on",
                "synchronous_commit = on",
                "full_page_writes = on",
                "wal_level = replica",
                "wal_log_hints = on",
                "max_wal_senders = 4",
                "wal_keep_size = 1GB",
                "hot_standby = on",
                # Default 5 s: a promote that arrives while the standby waits to
                # retry its lost primary then waits up to that long (seen in 1
                # switchover of 5 here). 100 ms gives PostgreSQL its best case.
                "wal_retrieve_retry_interval = 100ms",
                "max_wal_size = 1GB",
                "checkpoint_timeout = 15min",
                "ssl = on",
                "ssl_cert_file = 'server.crt'",
                "ssl_key_file = 'server.key'",
                "ssl_min_protocol_version = 'TLSv1.3'",
                "include_if_exists = 'node.conf'",
            ]) + "\n")
        self.node_conf("pg1")
        self.start("pg1")
        self.sql("pg1", "CREATE DATABASE bench", db="postgres")
        self.sql("pg1", PG_SCHEMA)
        self.pgrun([self.tool("pg_basebackup"), "-d",
                    "host=127.0.0.1 port=%d user=postgres sslmode=require" %
                    self.nodes["pg1"]["port"], "-D", self.nodes["pg2"]["dir"], "-X", "stream",
                    "--checkpoint=fast"], what="pg_basebackup")
        self.node_conf("pg2", standby_of="pg1")
        self.start("pg2")
        self.wait_state("pg1", "pg2", ("streaming/async",))
        self.node_conf("pg1", sync_to="pg2")
        self.pgrun([self.tool("pg_ctl"), "-D", self.nodes["pg1"]["dir"], "reload"])
        self.wait_state("pg1", "pg2", ("streaming/sync",))
        ssl = self.sql("pg1", "SELECT coalesce(s.version, 'no TLS') FROM pg_stat_replication r "
                       "LEFT JOIN pg_stat_ssl s ON s.pid = r.pid", db="postgres")
        version = self.sql("pg1", "SHOW server_version", db="postgres")
        say("# PostgreSQL %s: pg1 primary on 127.0.0.1:%d, pg2 synchronous standby on "
            "127.0.0.1:%d, replication link %s; writers over the unix socket" %
            (version[0], self.nodes["pg1"]["port"], self.nodes["pg2"]["port"], ssl[0]))
        self.writer_conninfo = ("host=%s,%s port=%d,%d user=postgres dbname=bench "
                                "target_session_attrs=read-write connect_timeout=5" %
                                (self.run_dir, self.run_dir, self.nodes["pg1"]["port"],
                                 self.nodes["pg2"]["port"]))

    def writers_start(self):
        self.writers = [PgWriter(self, i) for i in range(self.opts.writers)]
        for w in self.writers:
            w.start()

    def writers_stop(self):
        for w in self.writers:
            w.stop.set()
        for w in self.writers:
            w.join(timeout=60)
        sent = sum(w.sent for w in self.writers)
        acked = sum(w.acked for w in self.writers)
        errors = [e for w in self.writers for e in w.errors]
        self.writers = []
        return sent, acked, errors

    def repoint(self, old, new):
        """The old primary becomes a synchronous standby of the new one."""
        self.sql(new, "CHECKPOINT", db="postgres")  # pg_rewind reads the new timeline from it
        r = self.pgrun([self.tool("pg_rewind"), "--target-pgdata", self.nodes[old]["dir"],
                        "--source-server", "host=%s port=%d user=postgres dbname=postgres" %
                        (self.run_dir, self.nodes[new]["port"])], what="pg_rewind " + old)
        rewound = "no rewind required" not in r.stdout
        self.node_conf(old, standby_of=new)
        self.start(old)
        self.wait_state(new, old, ("streaming/async", "streaming/sync"))
        self.node_conf(new, sync_to=old)
        self.pgrun([self.tool("pg_ctl"), "-D", self.nodes[new]["dir"], "reload"])
        self.wait_state(new, old, ("streaming/sync",))
        return rewound

    def wait_writes(self, seconds=30):
        t = time.monotonic()
        if self.first_ack_after(t, seconds) is None:
            raise BenchError("PostgreSQL: no insert committed within %d s" % seconds)

    def bench_switchovers(self, count):
        say("# PostgreSQL (a): %d switchovers (fast stop, promote, pg_rewind, standby) under %d "
            "writers at %g rows/s each" % (count, self.opts.writers, self.rate))
        primary, standby = "pg1", "pg2"
        self.writers_start()
        t_base = time.monotonic()
        time.sleep(3.5)
        t_base_end = time.monotonic()
        runs = []
        for k in range(count):
            self.wait_writes()
            t_start = time.monotonic()
            self.fast_stop(primary)
            t_stopped = time.monotonic()
            self.promote(standby)
            t_promoted = time.monotonic()
            t_first = self.first_ack_after(t_promoted)
            if t_first is None:
                raise BenchError("PostgreSQL: no insert committed after the promotion of " +
                                 standby)
            t_r0 = time.monotonic()
            rewound = self.repoint(primary, standby)
            t_r1 = time.monotonic()
            runs.append({"t_start": t_start, "t_end": t_first,
                         "stop_ms": (t_stopped - t_start) * 1000,
                         "first_ms": (t_first - t_start) * 1000,
                         "repoint_ms": (t_r1 - t_r0) * 1000,
                         "one_copy_ms": (t_r1 - t_stopped) * 1000, "rewound": rewound})
            say("#   switchover %d: %s -> %s: stop %.0f ms, first insert %.0f ms after the stop "
                "began; repoint %.0f ms (%s)" %
                (k + 1, primary, standby, runs[-1]["stop_ms"], runs[-1]["first_ms"],
                 runs[-1]["repoint_ms"], "pg_rewind copied" if rewound else "no rewind needed"))
            primary, standby = standby, primary
        time.sleep(1.0)
        sent, acked, errors = self.writers_stop()
        acks = self.acks_sorted()
        gaps = []
        for r in runs:
            gap = writer_gap(acks, r["t_start"], r["t_end"])
            gaps.append(gap * 1000 if gap is not None else None)
        width = pct([r["t_end"] - r["t_start"] for r in runs], 50)
        self.primary = primary
        return {"runs": runs, "gaps": gaps,
                "baseline": baseline_gaps(acks, t_base + 0.5, t_base_end, width),
                "sent": sent, "acked": acked, "failed": sent - acked, "errors": errors[:3]}

    def bench_failovers(self, count):
        say("# PostgreSQL (b): %d failovers (SIGKILL of the primary, promote, pg_rewind, standby) "
            "under %d writers" % (count, self.opts.writers))
        primary = self.primary
        standby = "pg2" if primary == "pg1" else "pg1"
        self.writers_start()
        time.sleep(2.0)
        rounds = []
        for k in range(count):
            self.wait_writes()
            self.kill(primary)
            t_kill = time.monotonic()
            time.sleep(0.5)  # tandem's silence is 4 s; here the operator's decision time
            t0 = time.monotonic()
            self.promote(standby)
            t_first = self.first_ack_after(t0)
            if t_first is None:
                raise BenchError("PostgreSQL: no insert committed after the promotion of " +
                                 standby)
            t_r0 = time.monotonic()
            rewound = self.repoint(primary, standby)
            t_r1 = time.monotonic()
            rounds.append({"to_first_ack_ms": (t_first - t0) * 1000,
                           "kill_to_first_ack_ms": (t_first - t_kill) * 1000,
                           "repoint_ms": (t_r1 - t_r0) * 1000, "rewound": rewound})
            say("#   failover %d: SIGKILL %s, promote %s: first insert %.0f ms after the promote;"
                " repoint %.0f ms (%s)" %
                (k + 1, primary, standby, rounds[-1]["to_first_ack_ms"],
                 rounds[-1]["repoint_ms"], "pg_rewind copied" if rewound else "no rewind needed"))
            primary, standby = standby, primary
        time.sleep(1.0)
        sent, acked, errors = self.writers_stop()
        self.primary = primary
        return {"rounds": rounds, "sent": sent, "acked": acked, "not_acked": sent - acked,
                "errors": errors[:3]}

    def end_checks(self):
        rows = self.sql(self.primary, "SELECT lsn FROM message")
        held = set(int(x) for x in rows)
        with self.lock:
            acked = [lsn for _, lsn in self.acks]
        lost = [lsn for lsn in acked if lsn not in held]
        return len(acked), len(lost)

    def teardown(self):
        for name in self.started:
            self.pgrun([self.tool("pg_ctl"), "-D", self.nodes[name]["dir"], "-m", "immediate",
                        "stop"], check=False)


def run_pg(opts, work, templates):
    pg = PgBench(opts, work, templates)
    out = {}
    try:
        pg.setup()
        out["switchover"] = pg.bench_switchovers(opts.pg_switchovers)
        out["failover"] = pg.bench_failovers(opts.pg_failovers) if opts.pg_failovers > 0 else None
        out["writes"], out["lost"] = pg.end_checks()
    except BaseException:
        for node in pg.nodes.values():
            try:
                with open(node["log"], errors="replace") as f:
                    tail = f.read().splitlines()[-10:]
                sys.stderr.write("bench_switchover: last lines of %s:\n%s\n" %
                                 (node["log"], "\n".join(tail)))
            except OSError:
                pass
        raise
    finally:
        pg.teardown()
    return out


# ---- report ---------------------------------------------------------------------------------


def fmt(v, digits=0):
    if v is None:
        return "-"
    return "{:,.{}f}".format(v, digits)


def ratio(a, b):
    return a / b if a is not None and b else None


def result(name, measure, value):
    if value is None:
        return
    if isinstance(value, int):
        print("RESULT {} {} {}".format(name, measure, value))
        return
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    print("RESULT {} {} {:.{}f}".format(name, measure, value, decimals))


def report(tan, pg):
    ts_sw = tan.get("switchover") if tan else None
    ts_fo = tan.get("failover") if tan else None
    pg_sw = pg.get("switchover") if pg else None
    pg_fo = pg.get("failover") if pg else None

    def stats(values):
        values = [v for v in values if v is not None]
        return pct(values, 50), pct(values, 99), max(values) if values else None

    t_pause = stats(ts_sw["pauses"]) if ts_sw else (None,) * 3
    t_gap = stats(ts_sw["gaps"]) if ts_sw else (None,) * 3
    p_gap = stats(pg_sw["gaps"]) if pg_sw else (None,) * 3
    t_base = stats(ts_sw["baseline"]) if ts_sw else (None,) * 3
    p_base = stats(pg_sw["baseline"]) if pg_sw else (None,) * 3
    p_repoint = stats([r["repoint_ms"] for r in pg_sw["runs"]]) if pg_sw else (None,) * 3
    p_onecopy = stats([r["one_copy_ms"] for r in pg_sw["runs"]]) if pg_sw else (None,) * 3
    t_fo = stats([r["to_first_ack_ms"] for r in ts_fo["rounds"]]) if ts_fo else (None,) * 3
    t_focmd = stats([r["command_ms"] for r in ts_fo["rounds"]]) if ts_fo else (None,) * 3
    t_fokill = stats([r["kill_to_first_ack_ms"] for r in ts_fo["rounds"]]) if ts_fo else \
        (None,) * 3
    p_fo = stats([r["to_first_ack_ms"] for r in pg_fo["rounds"]]) if pg_fo else (None,) * 3
    p_forep = stats([r["repoint_ms"] for r in pg_fo["rounds"]]) if pg_fo else (None,) * 3

    print()
    print("| measure | tandem p50 / p99 / max | PostgreSQL 15 p50 / p99 / max "
          "| tandem / PG (p99) |")
    print("| --- | --- | --- | --- |")

    def row(label, t, p, digits=0):
        print("| {} | {} | {} | {} |".format(
            label, " / ".join(fmt(v, digits) for v in t), " / ".join(fmt(v, digits) for v in p),
            fmt(ratio(t[1], p[1]), 3)))

    row("switchover: write pause measured by the nodes, ms (%d)" %
        (len(ts_sw["pauses"]) if ts_sw else 0), t_pause, (None,) * 3)
    row("switchover: longest gap between acknowledged writes, ms (tandem %d, PG %d)" %
        (len(ts_sw["gaps"]) if ts_sw else 0, len(pg_sw["gaps"]) if pg_sw else 0), t_gap, p_gap)
    row("baseline: the same gap in windows as long, without switchover, ms (tandem %d, PG %d)"
        % (len(ts_sw["baseline"]) if ts_sw else 0, len(pg_sw["baseline"]) if pg_sw else 0),
        t_base, p_base, 1)
    row("switchover: repoint of the old primary (pg_rewind, start, sync), ms", (None,) * 3,
        p_repoint)
    row("switchover: PG commits with one copy (stop to sync again), ms", (None,) * 3, p_onecopy)
    row("failover: command start to first acknowledged write, ms (tandem %d, PG %d)" %
        (len(ts_fo["rounds"]) if ts_fo else 0, len(pg_fo["rounds"]) if pg_fo else 0), t_fo, p_fo)
    row("failover: the command itself, ms", t_focmd, (None,) * 3)
    row("failover: SIGKILL to first acknowledged write, ms", t_fokill, (None,) * 3)
    row("failover: repoint of the old primary, ms", (None,) * 3, p_forep)
    print()
    if ts_sw:
        print("# tandem switchovers: %d in %.1f s (%d asked again: target still in its "
              "handshake); writes %d sent, %d acknowledged, %d failed (%d writer processes "
              "failed)" %
              (len(ts_sw["pauses"]), ts_sw["seconds"], ts_sw["retries"], ts_sw["sent"],
               ts_sw["acked"], ts_sw["failed"], ts_sw["failed_processes"]))
        print("# tandem switchovers, the 5 longest: nodes %s ms; writers %s ms" %
              (", ".join(fmt(v) for v in sorted(ts_sw["pauses"])[-5:][::-1]),
               ", ".join(fmt(v) for v in sorted(ts_sw["gaps"])[-5:][::-1])))
        hist = tan.get("history", {})
        differ = [(e, p, hist.get(e)) for _, _, p, e in ts_sw["runs"] if hist.get(e) != p]
        if differ:
            print("# WARNING: tandem history's pause differs from the switchover's answer "
                  "(epoch, answer, history): %s" % differ[:5])
        print("# tandem history --json: %d command epochs with a pause, p50/p99/max %s/%s/%s ms "
              "(the JSON answers: %s/%s/%s)" %
              (len(hist), fmt(pct(list(hist.values()), 50)), fmt(pct(list(hist.values()), 99)),
               fmt(max(hist.values()) if hist else None), fmt(t_pause[0]), fmt(t_pause[1]),
               fmt(t_pause[2])))
    if ts_fo:
        print("# tandem failovers: writes %d sent, %d acknowledged (not acknowledged: those "
              "of the killed primary and those waiting for a primary, given up after %g s); "
              "%d writer restarts" % (ts_fo["sent"], ts_fo["acked"], CLIENT_TIMEOUT_S,
                                      ts_fo["restarts"]))
    if tan:
        print("# tandem end: %d acknowledged writes, %d lost; chain hashes equal on the three "
              "nodes; SIGTERM to exit: %s" %
              (tan["writes"], tan["lost"], ", ".join("%s %.1f s" % (n, s) for n, s in
                                                     sorted(tan["stops"].items()))))
    if pg_sw:
        print("# PostgreSQL switchovers: writes %d sent, %d committed, %d failed (%s)" %
              (pg_sw["sent"], pg_sw["acked"], pg_sw["failed"], "; ".join(pg_sw["errors"]) or "-"))
    if pg_fo:
        print("# PostgreSQL failovers: writes %d sent, %d committed (%s)" %
              (pg_fo["sent"], pg_fo["acked"], "; ".join(pg_fo["errors"]) or "-"))
    if pg:
        print("# PostgreSQL end: %d committed inserts, %d lost" % (pg["writes"], pg["lost"]))
    print()

    for name, (p50, p99, mx) in (("switchover.tandem.pause", t_pause),
                                 ("switchover.tandem.writer_gap", t_gap),
                                 ("switchover.postgresql.writer_gap", p_gap),
                                 ("switchover.tandem.baseline_gap", t_base),
                                 ("switchover.postgresql.baseline_gap", p_base),
                                 ("switchover.postgresql.repoint", p_repoint),
                                 ("switchover.postgresql.one_copy", p_onecopy),
                                 ("failover.tandem.to_first_ack", t_fo),
                                 ("failover.tandem.command", t_focmd),
                                 ("failover.tandem.kill_to_first_ack", t_fokill),
                                 ("failover.postgresql.to_first_ack", p_fo),
                                 ("failover.postgresql.repoint", p_forep)):
        result(name, "p50_ms", p50)
        result(name, "p99_ms", p99)
        result(name, "max_ms", mx)
    if ts_sw:
        result("switchover.tandem", "switchovers", len(ts_sw["pauses"]))
        result("switchover.tandem", "failed_writes", ts_sw["failed"])
    if pg_sw:
        result("switchover.postgresql", "switchovers", len(pg_sw["runs"]))
        result("switchover.postgresql", "failed_writes", pg_sw["failed"])
    if tan:
        result("tandem", "lost_writes", tan["lost"])
    if pg:
        result("postgresql", "lost_writes", pg["lost"])
    result("switchover.writer_gap", "tandem_over_pg_p50", ratio(t_gap[0], p_gap[0]))
    result("switchover.writer_gap", "tandem_over_pg_p99", ratio(t_gap[1], p_gap[1]))
    result("failover.to_first_ack", "tandem_over_pg_p50", ratio(t_fo[0], p_fo[0]))
    result("failover.to_first_ack", "tandem_over_pg_max", ratio(t_fo[2], p_fo[2]))
    if ts_sw:
        print("# target switchover pause p99 < 50 ms (as the nodes measure it): %s ms: %s; as "
              "the writers saw it: p99 %s ms (their gaps in windows as long without a "
              "switchover: p99 %s ms)" %
              (fmt(t_pause[1]), "met" if t_pause[1] is not None and t_pause[1] < 50 else
               "NOT met", fmt(t_gap[1], 1), fmt(t_base[1], 1)))
    if ts_fo:
        print("# target failover < 1 s (command start to first acknowledged write): max %s ms: %s"
              % (fmt(t_fo[2]), "met" if t_fo[2] < 1000 else "NOT met"))


def main():
    p = argparse.ArgumentParser(
        description="Switchover and failover under load: tandem beside PostgreSQL 15.")
    p.add_argument("build", nargs="?", default=os.path.join(REPO, "build"),
                   help="build directory with tools/tandem and tools/tandemd (default build/)")
    p.add_argument("--switchovers", type=int, default=100)
    p.add_argument("--failovers", type=int, default=5)
    p.add_argument("--pg-switchovers", type=int, default=10)
    p.add_argument("--pg-failovers", type=int, default=5)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--rate", type=float, default=50.0, help="records/s per writer (default 50)")
    p.add_argument("--skip-pg", action="store_true")
    p.add_argument("--skip-tandem", action="store_true")
    p.add_argument("--pg-bin", default=PG_BIN)
    p.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"),
                   help="where the work directory goes")
    p.add_argument("--keep", action="store_true")
    opts = p.parse_args()
    for name in ("switchovers", "failovers", "pg_switchovers", "pg_failovers", "writers"):
        if getattr(opts, name) < 0 or (name == "writers" and opts.writers < 1):
            sys.stderr.write("bench_switchover: bad --%s\n" % name.replace("_", "-"))
            return 2
    if opts.switchovers < 1 and not opts.skip_tandem:
        sys.stderr.write("bench_switchover: --switchovers must be at least 1\n")
        return 2
    if not opts.rate > 0:
        sys.stderr.write("bench_switchover: bad --rate\n")
        return 2
    build = os.path.abspath(opts.build)
    opts.tandem = os.path.join(build, "tools", "tandem")
    opts.tandemd = os.path.join(build, "tools", "tandemd")
    opts.phases = ""
    for binary in (opts.tandem, opts.tandemd):
        if not os.access(binary, os.X_OK):
            sys.stderr.write("bench_switchover: %s not found (meson compile -C %s)\n" %
                             (binary, build))
            return 1
    buildtype = "unknown"
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            for o in json.load(f):
                if o.get("name") == "buildtype":
                    buildtype = o.get("value")
    except (OSError, ValueError):
        pass

    os.makedirs(opts.dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_switchover-", dir=os.path.abspath(opts.dir))
    os.chmod(work, 0o755)  # PostgreSQL runs as 'postgres' when we are root.
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    fs = subprocess.run(["stat", "-f", "-c", "%T", work], stdout=subprocess.PIPE,
                        text=True).stdout.strip()
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    say("# bench_switchover: %s, %s, %d cores; work directory %s (%s); load average %s" %
        (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), " ".join(os.uname()[::2][:2]),
         os.cpu_count(), work, fs, load))
    say("# build %s (buildtype %s); git %s" % (build, buildtype, git.strip() or "unknown"))
    if buildtype != "release":
        say("# WARNING: not a release build (meson setup BUILD -Dbuildtype=release)")

    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)
    status = 0
    tan = pg = None
    started = time.monotonic()
    try:
        gen = ts.run([opts.tandem, "generate", "--seed", "4", "--customers", str(ts.CUSTOMERS),
                      "--count", "500"])
        if gen.returncode != 0:
            raise BenchError("tandem generate failed: " + gen.stderr.strip())
        templates = [json.loads(line) for line in gen.stdout.splitlines()]
        templates = [t for t in templates if t.get("type") == "message"]
        if not opts.skip_tandem:
            tan = run_tandem(opts, work)
        if not opts.skip_pg:
            pg = run_pg(opts, work, templates)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        say("# done in %.0f s; load average %s" % (time.monotonic() - started, load))
        report(tan, pg)
    except BenchError as e:
        sys.stderr.write("bench_switchover: %s\n" % e)
        status = 1
    except KeyboardInterrupt:
        sys.stderr.write("bench_switchover: interrupted\n")
        status = 130
    except Exception as e:  # An unexpected error: keep the work directory.
        import traceback
        traceback.print_exc()
        sys.stderr.write("bench_switchover: %s\n" % e)
        status = 1
    if opts.keep or status == 1:
        sys.stderr.write("bench_switchover: kept %s\n" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
