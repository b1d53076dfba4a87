#!/usr/bin/env python3
"""tests/loopback/test_switchover.py: switchover and failover of three real
tandemd nodes on 127.0.0.1 (TLS links) under continuous writes (issue 4;
DESIGN "Switchover, failover"; docs/PROTOCOL.md §7.5, §8).

Usage: test_switchover.py TANDEM TANDEMD [--switchovers N] [--writers W]
                          [--rate R] [--phases uacbs] [--keep]

Method:
- `tandem ca`, `tandem init` n1 (the primary of epoch 1), n2, n3 with
  write_deadline_ms = 20000. W (default 16) writer threads, each feeding one
  `tandem append --node DIR` over a pipe at R records/s (default 25), spread
  over the three nodes' local sockets (a backup forwards to the primary).
  Every record has a unique message_id; every printed {"lsn": N} is paired
  with its record (line k of the output answers input line k). Writers run in
  sessions: a session ends by closing every writer's input and waiting for it
  to exit, so a session's "failed writes" are exactly the records sent and
  not acknowledged, plus every non-zero exit.
- usage: bad arguments (exit 2, one line on stderr), an unknown target, a
  switchover asked of a backup (refused, naming the primary) or to the
  primary itself, a failover sent to another node than its target or to the
  primary, a directory with no tandemd, HOST:PORT without a certificate, a
  standalone tandemd ("no replicas"); one switchover over TCP + TLS with a
  client certificate (traced by the primary with the certificate's name and
  the outcome) and one to "the next of the rotation".
- (a) N switchovers in a row (default 100: about 10 s here) with `tandem switchover --node
  <primary's dir> --to <next node> --json`, round robin, each once the
  primary sees the target's link live (a switchover to a node still in its
  handshake is refused, TARGET_DOWN, and asked again). After each, every node
  must name the new primary within 5 s. Checks: every switchover done (exit
  0), zero failed writes in the session. The write pause of each is printed
  as p50/p99/max (info only: no timing assertion).
- (c1) `tandem failover` asked of a backup while the primary runs: exit 1,
  refusal "primary alive", every node's epoch unchanged.
- (c2) a switchover to a backup that is SIGSTOPped (lagging): exit 1, refused
  or abandoned with its reason; after SIGCONT the writers are acknowledged
  again.
- (c3) SIGKILL one backup, 1 s later (writes acknowledged without it) the
  primary: `tandem failover` on the other backup is refused (the dead one
  does not answer: "unreachable"), epochs unchanged.
- (b) restart that backup: `tandem failover --dry-run` on it says a
  promotion would be refused (the other backup holds more: "not_highest")
  and names the LSNs at risk (beyond its durable LSN), with their records per
  customer counted in the other backup's copy (fetched from it: every LSN up
  to its durable LSN counted once); the dry run on the other backup names it the
  most caught up (highest durable LSN in the probe's table); `tandem failover
  --to` it succeeds (retried while the old primary's silence is shorter than
  failover_silence_ms: "primary alive"). The old primary is restarted and
  must rejoin as a backup of the new one.
- schedule (after the end checks): every node restarted with
  switchover_interval = 500ms and rotation = n1, n3, n2; the primary must move
  on its own in rotation order, at least 3 times, with zero failed writes, and
  each scheduled switchover is traced.
Checks at the end of (b): every node's last_lsn equal and durable, the same chain
hash on all three (status JSON), and every acknowledged LSN holds, on every
node, exactly the record acknowledged for it (queries per customer through
each node's tandemd); `tandem verify` of each stopped node exits 0.
Every process started here is killed in teardown, also on failure.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_lib  # noqa: E402
from cluster_lib import free_ports, log  # noqa: E402

NODES = ("n1", "n2", "n3")
CUSTOMERS = 8
DEADLINE_MS = 20000


def run(args, timeout=60, **kw):
    return cluster_lib.run(args, timeout=timeout, **kw)


def percentile(values, p):
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


class Node:
    def __init__(self, t, name, port):
        self.t = t
        self.name = name
        self.dir = os.path.join(t.work, name)
        self.port = port
        self.errpath = os.path.join(t.work, name + ".err")
        self.proc = None
        self.up = False
        self.paused = False

    def start(self):
        errf = open(self.errpath, "ab")
        self.proc = subprocess.Popen([self.t.tandemd, self.dir], stdout=subprocess.DEVNULL,
                                     stderr=errf)
        errf.close()
        cluster_lib.wait_tandemd(self.proc, self.dir, self.name)
        self.up = True

    def kill(self):
        self.up = False
        if self.proc is not None:
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.paused = False
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self):
        self.up = False
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        rc = cluster_lib.wait_or_kill(self.proc, 15)
        self.proc = None
        return rc

    def status(self, timeout=10):
        try:
            r = run([self.t.tandem, "status", "--node", self.dir, "--json"], timeout=timeout)
            return json.loads(r.stdout)
        except (subprocess.TimeoutExpired, ValueError):
            return None

    def tail(self, lines=30):
        return cluster_lib.tail_lines(self.errpath, lines)


def self_entry(doc):
    for n in (doc or {}).get("nodes", []):
        if n.get("self"):
            return n
    return None


def entry(doc, name):
    for n in (doc or {}).get("nodes", []):
        if n.get("id") == name:
            return n
    return None


class Writer(threading.Thread):
    """One `tandem append --node DIR` at a time, fed at a steady rate; a
    process that fails is replaced while the session runs (when its node is
    up)."""

    def __init__(self, t, wid, node):
        super().__init__(daemon=True)
        self.t = t
        self.wid = wid
        self.node = node
        self.stop = threading.Event()
        self.exits = []  # (rc, first stderr line, sent, acked)
        self.acks = 0

    def run(self):
        while not self.stop.is_set():
            if not self.node.up or self.node.paused:
                time.sleep(0.05)
                continue
            errf = tempfile.TemporaryFile()
            proc = subprocess.Popen([self.t.tandem, "append", "--node", self.node.dir],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
            self.feed(proc, errf)

    def feed(self, proc, errf, timeout_s=None):
        """Feeds proc until the session stops or proc ends; with timeout_s, a
        write unacknowledged for that long kills proc. Returns 0 if proc
        exited 0 and did not time out, else 1."""
        sent = []
        sent_at = []
        acked = [0]

        def reader():
            for line in proc.stdout:
                try:
                    lsn = json.loads(line)["lsn"]
                except (ValueError, KeyError, TypeError):
                    self.t.fail("writer %d: a line that is not an LSN: %r" % (self.wid, line))
                    continue
                i = acked[0]
                if i >= len(sent):
                    self.t.fail("writer %d: an LSN for no record" % self.wid)
                    continue
                self.t.record_ack(lsn, sent[i])
                acked[0] += 1
                self.acks += 1

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        interval = 1.0 / self.t.rate
        next_t = time.monotonic()
        timed_out = False
        while not self.stop.is_set() and proc.poll() is None:
            now = time.monotonic()
            if timeout_s is not None and acked[0] < len(sent) and \
                    now - sent_at[acked[0]] > timeout_s:
                timed_out = True
                proc.kill()
                break
            if now < next_t:
                time.sleep(min(next_t - now, 0.05))
                continue
            next_t = max(next_t + interval, now - 1.0)
            mid = self.t.new_message_id(self.wid)
            line = self.t.record_line(mid)
            sent.append(mid)
            sent_at.append(now)
            try:
                proc.stdin.write((line + "\n").encode())
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                break
        try:
            proc.stdin.close()
        except OSError:
            pass
        rc = cluster_lib.wait_or_kill(proc, DEADLINE_MS / 1000 + 30)
        rt.join(timeout=10)
        errf.seek(0)
        err = errf.read().decode("utf-8", "replace").strip()
        errf.close()
        first = self.exit_line(rc, err.splitlines()[0] if err else "", timed_out)
        self.exits.append((rc, first, len(sent), acked[0]))
        return 0 if rc == 0 and not timed_out else 1

    def exit_line(self, rc, first, timed_out):
        """What self.exits says of a process: its first stderr line, and who it
        was if it failed."""
        if rc != 0:
            return "writer %d on %s, t=%.1f: %s" % (self.wid, self.node.name, self.t.now(), first)
        return first


class Test:
    def __init__(self, opts):
        self.opts = opts
        self.tandem = opts.tandem
        self.tandemd = opts.tandemd
        self.rate = opts.rate
        self.work = tempfile.mkdtemp(prefix="tandem-switchover-")
        self.failures = []
        self.lock = threading.Lock()
        self.acked = {}  # lsn -> message_id
        self.twice = []
        self.mid_next = 0
        self.templates = []
        self.customers = []
        self.nodes = {}
        self.writers = []
        self.t0 = time.monotonic()

    # ---- bookkeeping -------------------------------------------------------------

    def now(self):
        return time.monotonic() - self.t0

    def check(self, name, ok, detail=""):
        if ok:
            log("ok   " + name)
        else:
            log("FAIL " + name + (": " + detail if detail else ""))
            self.failures.append(name)
        return ok

    def fail(self, what):
        self.check(what, False)

    def new_message_id(self, wid):
        with self.lock:
            self.mid_next += 1
            return "<w%d.k%d@switchover.test>" % (wid, self.mid_next)

    def record_line(self, mid):
        k = int(mid.split(".k")[1].split("@")[0])
        rec = dict(self.templates[k % len(self.templates)])
        rec["message_id"] = mid
        return json.dumps(rec, separators=(",", ":"))

    def record_ack(self, lsn, mid):
        with self.lock:
            if lsn in self.acked:
                self.twice.append(lsn)
            self.acked[lsn] = mid

    # ---- cluster -----------------------------------------------------------------

    def setup(self):
        ports = dict(zip(NODES, free_ports(3)))
        ca = os.path.join(self.work, "ca")
        r = run([self.tandem, "ca", ca, "--cluster", "c1"])
        assert r.returncode == 0, r.stderr
        for name in NODES:
            node = Node(self, name, ports[name])
            self.nodes[name] = node
            args = [self.tandem, "init", node.dir, "--cluster", "c1", "--node", name, "--listen",
                    "127.0.0.1:%d" % ports[name], "--ca", ca, "--primary", "n1"]
            for other in NODES:
                if other != name:
                    args += ["--peer", "%s=127.0.0.1:%d" % (other, ports[other])]
            r = run(args)
            assert r.returncode == 0, r.stderr
            cluster_lib.set_write_deadline(node.dir, DEADLINE_MS)
        gen = run([self.tandem, "generate", "--seed", "4", "--customers", str(CUSTOMERS),
                   "--count", "500"])
        assert gen.returncode == 0, gen.stderr
        customers, templates = cluster_lib.split_generated(gen.stdout)
        self.customers += customers
        self.templates += templates
        for node in self.nodes.values():
            node.start()
        r = run([self.tandem, "append", "--node", self.nodes["n1"].dir],
                input="".join(c + "\n" for c in self.customers), timeout=60)
        self.check("customers appended", r.returncode == 0, r.stderr.strip())
        self.wait_live(self.primary_name(), 30)

    def primary_name(self):
        for _ in range(100):
            for node in self.nodes.values():
                if not node.up or node.paused:
                    continue
                doc = node.status()
                if doc and doc.get("role") == "primary" and doc.get("primary") == node.name:
                    return node.name
            time.sleep(0.1)
        raise RuntimeError("no node acts as primary")

    def wait_live(self, primary, seconds, only=None):
        """Until the primary sees every running backup's link live."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            doc = self.nodes[primary].status()
            ok = doc is not None and doc.get("primary") == primary
            for name, node in self.nodes.items():
                if name == primary or not node.up or node.paused or (only and name != only):
                    continue
                e = entry(doc, name)
                ok = ok and e is not None and e.get("link_state", e.get("link")) == "live"
            if ok:
                return True
            time.sleep(0.05)
        return False

    def epochs(self):
        out = {}
        for name, node in self.nodes.items():
            if node.up and not node.paused:
                doc = node.status()
                me = self_entry(doc)
                out[name] = (me or {}).get("epoch"), (doc or {}).get("epoch")
        return out

    # ---- writers -----------------------------------------------------------------

    def writers_start(self, exclude=()):
        names = [n for n in NODES if n not in exclude]
        self.writers = [Writer(self, i, self.nodes[names[i % len(names)]])
                        for i in range(self.opts.writers)]
        for w in self.writers:
            w.start()

    def writers_stop(self):
        for w in self.writers:
            w.stop.set()
        for w in self.writers:
            w.join(timeout=DEADLINE_MS / 1000 + 60)
        exits = [e for w in self.writers for e in w.exits]
        self.writers = []
        failed = [e for e in exits if e[0] != 0 or e[2] != e[3]]
        sent = sum(e[2] for e in exits)
        acked = sum(e[3] for e in exits)
        return failed, sent, acked

    def acks_now(self):
        return sum(w.acks for w in self.writers)

    def acks_resume(self, seconds):
        before = self.acks_now()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.acks_now() > before + len(self.writers):
                return True
            time.sleep(0.1)
        return False

    # ---- commands ----------------------------------------------------------------

    def command(self, args, timeout=60):
        r = run([self.tandem] + args + ["--json"], timeout=timeout)
        try:
            doc = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            doc = None
        return r.returncode, doc, r.stderr.strip()

    # ---- usage and refusals that need no fault -------------------------------------

    def phase_usage(self):
        log("---- usage: bad arguments, wrong node, remote client, standalone node")
        primary = self.primary_name()
        backup = [n for n in NODES if n != primary][0]
        pdir = self.nodes[primary].dir
        cases = [
            (["switchover", "--node", pdir, "--to", "nosuch"], 1, "no node 'nosuch' in cluster c1"),
            (["switchover", "--node", pdir, "--to", "bad id"], 2, "--to 'bad id': not a node id"),
            (["switchover", "--node", pdir, "--to", primary], 1,
             "refused: the target is the primary itself"),
            (["switchover", "--node", self.nodes[backup].dir], 1,
             "refused: not the acting primary (node %s)" % primary),
            (["failover", "--node", pdir], 2, "--to ID is required"),
            (["failover", "--node", pdir, "--to", backup], 1,
             "this is node %s: send the failover to the node it promotes (%s)" % (primary, backup)),
            (["failover", "--node", pdir, "--to", primary], 1, "refused: not a backup"),
            (["switchover", "--node", os.path.join(self.work, "ca")], 2, "no tandemd runs in"),
            (["switchover", "--node", "127.0.0.1:%d" % self.nodes[primary].port], 2,
             "certificate"),
        ]
        for args, want_rc, want_text in cases:
            r = run([self.tandem] + args)
            out = r.stdout + r.stderr
            self.check("tandem %s: exit %d, says %r" % (" ".join(args[:1] + args[3:]), want_rc,
                                                        want_text),
                       r.returncode == want_rc and want_text in out,
                       "exit %d: %s" % (r.returncode, out.strip()))
            if want_rc == 2 or "refused" not in want_text:
                self.check("  ... on stderr as one line 'tandem: ...'",
                           r.stderr.startswith("tandem: ") and r.stderr.count("\n") == 1,
                           repr(r.stderr))
        # Over TCP + TLS with a client certificate: a switchover and back.
        cert = os.path.join(self.work, "client")
        r = run([self.tandem, "ca", os.path.join(self.work, "ca"), "--client", "ops", "--out",
                 cert])
        assert r.returncode == 0, r.stderr
        self.wait_live(primary, 10)
        rc, doc, err = self.command(["switchover", "--node",
                                     "127.0.0.1:%d" % self.nodes[primary].port, "--cert", cert,
                                     "--to", backup])
        self.check("switchover over TCP + TLS (--cert): done",
                   rc == 0 and doc is not None and doc.get("outcome") == "done" and
                   doc.get("target") == backup and doc.get("acting") is True,
                   "exit %d: %s %s" % (rc, json.dumps(doc), err))
        with open(self.nodes[primary].errpath, errors="replace") as f:
            trace = f.read()
        self.check("  ... traced with who asked (client:ops) and the outcome",
                   re.search(r"client \d+ \(client:ops\): SWITCHOVER to %s requested" % backup,
                             trace) is not None and
                   re.search(r"client \d+ \(client:ops\): SWITCHOVER answered: outcome done",
                             trace) is not None,
                   "\n".join(line for line in trace.splitlines() if "SWITCHOVER" in line)[-600:])
        self.wait_live(backup, 10)
        r = run([self.tandem, "switchover", "--node", self.nodes[backup].dir])
        log("     tandem switchover says: " + r.stdout.strip())
        after = NODES[(NODES.index(backup) + 1) % len(NODES)]  # Index order, after itself.
        self.check("switchover to the next of the rotation: done, %s -> %s" % (backup, after),
                   r.returncode == 0 and "switchover done: %s -> %s" % (backup, after) in
                   r.stdout, r.stdout + r.stderr)
        # A standalone node has no one to hand over to.
        alone = os.path.join(self.work, "alone")
        r = run([self.tandem, "init", alone, "--cluster", "solo", "--node", "s1"])
        assert r.returncode == 0, r.stderr
        errf = open(os.path.join(self.work, "alone.err"), "ab")
        proc = subprocess.Popen([self.tandemd, alone], stdout=subprocess.DEVNULL, stderr=errf)
        errf.close()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and \
                    not os.path.exists(os.path.join(alone, "tandemd.sock")):
                time.sleep(0.02)
            time.sleep(0.1)
            for command in (["switchover"], ["failover", "--to", "x"]):
                r = run([self.tandem] + command + ["--node", alone])
                self.check("tandem %s on a standalone node: exit 1, no replicas" % command[0],
                           r.returncode == 1 and "a standalone node has no replicas" in r.stderr,
                           "exit %d: %s" % (r.returncode, (r.stdout + r.stderr).strip()))
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    # ---- (a) ---------------------------------------------------------------------

    def phase_switchovers(self):
        log("---- (a) %d switchovers under %d writers" % (self.opts.switchovers,
                                                          self.opts.writers))
        self.writers_start()
        time.sleep(1)
        pauses = []
        retries = 0
        started = time.monotonic()
        primary = self.primary_name()
        done = 0
        while done < self.opts.switchovers:
            target = NODES[(NODES.index(primary) + 1) % len(NODES)]
            self.wait_live(primary, 10, only=target)
            rc, doc, err = self.command(["switchover", "--node", self.nodes[primary].dir,
                                         "--to", target])
            if rc != 0 and doc and doc.get("refusal") in ("target_down", "busy",
                                                         "in_progress", "target_lagging") \
                    and retries < 5 * self.opts.switchovers:
                retries += 1
                time.sleep(0.05)
                continue
            if not self.check("switchover %d: %s -> %s done" % (done + 1, primary, target),
                              rc == 0 and doc is not None and doc.get("outcome") == "done",
                              "exit %d: %s %s" % (rc, json.dumps(doc), err)):
                break
            pauses.append(doc.get("pause_ms", 0))
            # Every running node names the new primary within seconds.
            deadline = time.monotonic() + 5
            named = {}
            while time.monotonic() < deadline:
                named = {n: (node.status() or {}).get("primary") for n, node in
                         self.nodes.items()}
                if all(p == target for p in named.values()):
                    break
                time.sleep(0.05)
            if not self.check("switchover %d: every node names %s" % (done + 1, target),
                              all(p == target for p in named.values()), str(named)):
                break
            primary = target
            done += 1
        elapsed = time.monotonic() - started
        failed, sent, acked = self.writers_stop()
        log("info switchovers: %d done in %.1f s (%d asked again: target still in its "
            "handshake)" % (done, elapsed, retries))
        log("info switchover write pause: p50 %d ms, p99 %d ms, max %d ms" %
            (percentile(pauses, 50), percentile(pauses, 99), max(pauses or [0])))
        log("info writes during the switchovers: %d sent, %d acknowledged" % (sent, acked))
        self.check("(a) %d switchovers in a row" % self.opts.switchovers,
                   done == self.opts.switchovers)
        self.check("(a) zero failed writes during the switchovers", not failed and sent == acked,
                   str(failed[:5]))

    # ---- (c1), (c2) --------------------------------------------------------------

    def phase_refusals_alive(self):
        log("---- (c1) failover while the primary runs; (c2) switchover to a lagging node")
        self.writers_start()
        time.sleep(1)
        primary = self.primary_name()
        backups = [n for n in NODES if n != primary]
        before = self.epochs()
        rc, doc, err = self.command(["failover", "--node", self.nodes[backups[0]].dir,
                                     "--to", backups[0]])
        self.check("(c1) failover with the primary alive: refused (exit 1)",
                   rc == 1 and doc is not None and doc.get("outcome") == "refused",
                   "exit %d: %s %s" % (rc, json.dumps(doc), err))
        self.check("(c1) the reason names the live primary",
                   doc is not None and doc.get("refusal") == "primary_alive",
                   json.dumps(doc))
        after = self.epochs()
        self.check("(c1) nothing changed: epochs", before == after, "%s -> %s" % (before, after))
        r = run([self.tandem, "failover", "--node", self.nodes[backups[0]].dir, "--to",
                 backups[0]])
        log("     tandem failover says: " + r.stdout.strip())
        self.check("(c1) the summary names the refusal",
                   r.returncode == 1 and "refused: the old primary still answers" in r.stdout, r.stdout + r.stderr)

        # (c2): the target stopped: it does not catch up.
        lagging = backups[1]
        self.nodes[lagging].pause()
        time.sleep(1.0)
        before = self.epochs()
        r = run([self.tandem, "switchover", "--node", self.nodes[primary].dir, "--to", lagging],
                timeout=60)
        log("     tandem switchover says: " + r.stdout.strip())
        self.check("(c2) switchover to a stopped node: refused or abandoned (exit 1)",
                   r.returncode == 1 and ("refused: " in r.stdout or "abandoned: " in r.stdout),
                   r.stdout + r.stderr)
        self.check("(c2) the reason names the target",
                   "(node %s)" % lagging in r.stdout, r.stdout)
        after = self.epochs()
        if "refused" in r.stdout:
            self.check("(c2) refused: nothing changed: epochs", before == after,
                       "%s -> %s" % (before, after))
        self.nodes[lagging].resume()
        self.check("(c2) writes continue", self.acks_resume(20))
        self.check("(c2) the same node is primary", self.primary_name() == primary)
        failed, sent, acked = self.writers_stop()
        log("info writes during (c1), (c2): %d sent, %d acknowledged, %d writer exits failed" %
            (sent, acked, len(failed)))

    # ---- (c3), (b) ---------------------------------------------------------------

    def failover_until(self, target, seconds):
        """tandem failover --to target, again while the old primary's silence is
        too short ("primary alive"). Returns (rc, doc, err)."""
        deadline = time.monotonic() + seconds
        while True:
            rc, doc, err = self.command(["failover", "--node", self.nodes[target].dir, "--to",
                                         target])
            if rc == 0 or doc is None or doc.get("refusal") != "primary_alive" or \
                    time.monotonic() > deadline:
                return rc, doc, err
            time.sleep(0.3)

    def phase_failover(self):
        log("---- (c3) failover with a backup unreachable; (b) failover after SIGKILL")
        primary = self.primary_name()
        backups = [n for n in NODES if n != primary]
        self.wait_live(primary, 20)
        self.writers_start()
        time.sleep(2)
        # One backup dies first: it falls behind (the primary and the other
        # backup acknowledge without it), then does not answer.
        stopped = self.nodes[backups[1]]
        stopped.kill()
        time.sleep(1.0)
        old = self.nodes[primary]
        old.kill()
        t_kill = time.monotonic()
        log("     SIGKILL backup %s, 1 s later SIGKILL primary %s" % (stopped.name, primary))
        before = self.epochs()
        rc, doc, err = self.failover_until(backups[0], 15)
        self.check("(c3) failover with a backup unreachable: refused (exit 1)",
                   rc == 1 and doc is not None and doc.get("outcome") == "refused",
                   "exit %d: %s %s" % (rc, json.dumps(doc), err))
        self.check("(c3) the reason names the unreachable backup",
                   doc is not None and doc.get("refusal") == "unreachable" and
                   doc.get("refusal_node") == stopped.name, json.dumps(doc))
        stopped.start()
        after = self.epochs()
        before[stopped.name] = after.get(stopped.name)
        self.check("(c3) nothing changed: epochs", before == after, "%s -> %s" % (before, after))
        # The lagging backup: a promotion would lose what only the other holds.
        deadline = time.monotonic() + 15
        while True:
            rc, doc, err = self.command(["failover", "--dry-run", "--node", stopped.dir, "--to",
                                         stopped.name])
            if doc is None or doc.get("refusal") != "primary_alive" or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.3)
        risk = (doc or {}).get("risk") or {}
        rows = {n["id"]: n for n in (doc or {}).get("nodes", [])}
        self.check("(b) dry run on the lagging %s: would be refused, %s holds more (exit 1)" %
                   (stopped.name, backups[0]),
                   rc == 1 and doc.get("outcome") == "dry run" and
                   doc.get("refusal") == "not_highest" and
                   doc.get("refusal_node") == backups[0], "exit %d: %s %s" % (rc, json.dumps(doc),
                                                                              err))
        self.check("(b) ... and names the LSNs at risk: beyond its durable LSN, up to the other's",
                   risk.get("lsn_first") == rows.get(stopped.name, {}).get("durable_lsn", -1) + 1
                   and risk.get("lsn_last", 0) >= rows.get(backups[0], {}).get("durable_lsn", 0),
                   json.dumps(risk))
        customers = risk.get("customers") or []
        counted = risk.get("counted_lsn_last", 0) - risk.get("lsn_first", 1) + 1
        self.check("(b) ... counted per customer in %s's copy, every LSN to its durable one once"
                   % backups[0],
                   risk.get("counted_in") == backups[0] and
                   risk.get("counted_lsn_last", 0) >= rows.get(backups[0], {}).get("durable_lsn", 1)
                   and risk.get("records_counted") == counted and len(customers) > 0 and
                   sum(c["records"] for c in customers) + risk.get("other_customers_records", 0)
                   == counted, json.dumps(risk))
        r = run([self.tandem, "failover", "--dry-run", "--node", stopped.dir, "--to",
                 stopped.name])
        log("     tandem failover --dry-run on %s says:\n%s" % (stopped.name, r.stdout.rstrip()))
        self.check("(b) ... in the summary: the range and its records per customer",
                   "at risk: LSN %s..%s" % (risk.get("lsn_first"), risk.get("lsn_last")) in
                   r.stdout and ("in %s's copy" % backups[0]) in r.stdout and
                   "    customer " in r.stdout, r.stdout)
        # (b) the dry run names the most caught-up backup.
        rc, doc, err = self.command(["failover", "--dry-run", "--node",
                                     self.nodes[backups[0]].dir, "--to", backups[0]])
        self.check("(b) dry run answers", doc is not None and doc.get("outcome") == "dry run",
                   "exit %d: %s %s" % (rc, json.dumps(doc), err))
        best = backups[0]
        if doc is not None:
            rows = {n["id"]: n for n in doc.get("nodes", []) if n.get("id") in backups}
            if all(rows.get(b, {}).get("answered") for b in backups):
                best = max(backups, key=lambda b: (rows[b]["last_epoch"], rows[b]["durable_lsn"]))
            self.check("(b) the dry run's table names %s the most caught up" % backups[0],
                       best == backups[0], json.dumps(rows))
            r = run([self.tandem, "failover", "--dry-run", "--node", self.nodes[backups[0]].dir,
                     "--to", backups[0]])
            log("     tandem failover --dry-run says:\n" + r.stdout.rstrip())
        t_failover = time.monotonic()
        rc, doc, err = self.failover_until(best, 20)
        log("info failover: %.2f s after the kill, the command took %.2f s" %
            (time.monotonic() - t_kill, time.monotonic() - t_failover))
        self.check("(b) failover to the most caught-up backup %s: done" % best,
                   rc == 0 and doc is not None and doc.get("outcome") == "done",
                   "exit %d: %s %s" % (rc, json.dumps(doc), err))
        if rc == 0:
            self.check("(b) the new primary is %s" % best, self.primary_name() == best)
        self.check("(b) writes continue", self.acks_resume(30))
        old.start()
        log("     restarted %s" % primary)
        deadline = time.monotonic() + 30
        doc = None
        while time.monotonic() < deadline:
            doc = old.status()
            if doc and doc.get("role") == "backup" and doc.get("primary") == best:
                break
            time.sleep(0.2)
        self.check("(b) the old primary rejoined as a backup of %s" % best,
                   doc is not None and doc.get("role") == "backup" and doc.get("primary") == best,
                   json.dumps(doc)[:400] if doc else "no status")
        time.sleep(2)
        failed, sent, acked = self.writers_stop()
        log("info writes during (c3), (b): %d sent, %d acknowledged, %d writer processes "
            "failed (those on the killed primary, and those with a write forwarded to it "
            "when it died: not acknowledged, may be stored)" % (sent, acked, len(failed)))
        for rc, first, n_sent, n_acked in failed:
            log("info   exit %s after %d sent, %d acknowledged: %s" % (rc, n_sent, n_acked, first))

    # ---- the end -----------------------------------------------------------------

    def converge(self):
        deadline = time.monotonic() + 60
        selfs = {}
        while time.monotonic() < deadline:
            selfs = {n: self_entry(node.status()) for n, node in self.nodes.items()}
            if all(selfs.values()):
                lasts = {s["last_lsn"] for s in selfs.values()}
                durables = {s["durable_lsn"] for s in selfs.values()}
                if len(lasts) == 1 and durables == lasts:
                    return selfs
            time.sleep(0.5)
        return None

    def held(self, node):
        out = {}
        for c in range(1, CUSTOMERS + 1):
            q = run([self.tandem, "query", "--node", node.dir, "--customer", str(c)], timeout=120)
            if q.returncode not in (0, 1):
                self.check("query %s customer %d" % (node.name, c), False, q.stderr.strip())
                return None
            for line in q.stdout.splitlines():
                rec = json.loads(line)
                out[rec["lsn"]] = rec.get("message_id")
        return out

    def check_end(self):
        selfs = self.converge()
        self.check("every node at the same durable last LSN", selfs is not None)
        if selfs:
            hashes = {s.get("chain_hash") for s in selfs.values()}
            self.check("chain hashes equal on every node", len(hashes) == 1 and None not in hashes,
                       str(hashes))
            log("info last LSN %d on every node" % list(selfs.values())[0]["last_lsn"])
        self.check("no LSN acknowledged twice", not self.twice, str(self.twice[:10]))
        with self.lock:
            acked = dict(self.acked)
        log("info %d writes acknowledged in all" % len(acked))
        for name, node in self.nodes.items():
            held = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # A backup's index may trail its log.
                held = self.held(node)
                if held is None or all(held.get(lsn) == mid for lsn, mid in acked.items()):
                    break
                time.sleep(1)
            lost = [lsn for lsn, mid in acked.items() if held is None or held.get(lsn) != mid]
            self.check("%s holds every acknowledged write (zero lost)" % name, not lost,
                       "%d missing or different, first %s" % (len(lost), sorted(lost)[:10]))
        for name, node in self.nodes.items():
            rc = node.terminate()
            self.check("%s: tandemd exits 0 on SIGTERM" % name, rc == 0, str(rc))
        for name, node in self.nodes.items():
            r = run([self.tandem, "verify", "--node", node.dir], timeout=120)
            self.check("%s: tandem verify exits 0" % name, r.returncode == 0,
                       (r.stdout + r.stderr).strip()[-300:])

    # ---- the schedule ------------------------------------------------------------

    def phase_schedule(self):
        """switchover_interval = 500ms, rotation = n1, n3, n2 (not the index
        order): the primary moves on its own, in rotation order, and the
        writers see no error."""
        log("---- switchover_interval = 500ms, rotation = n1, n3, n2")
        rotation = ["n1", "n3", "n2"]
        for node in self.nodes.values():
            conf = os.path.join(node.dir, "tandem.conf")
            with open(conf) as f:
                text = f.read()
            text = text.replace("[replication]\n", "[replication]\nswitchover_interval = 500ms\n"
                                "rotation = %s\n" % ", ".join(rotation), 1)
            with open(conf, "w") as f:
                f.write(text)
        marks = {n: os.path.getsize(node.errpath) for n, node in self.nodes.items()}
        for node in self.nodes.values():
            node.start()
        self.writers_start()
        primaries = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(primaries) < 7:
            doc = self.nodes["n1"].status()
            p = (doc or {}).get("primary")
            if p and (not primaries or primaries[-1] != p):
                primaries.append(p)
            time.sleep(0.05)
        failed, sent, acked = self.writers_stop()
        log("info primaries seen in turn: %s; writes: %d sent, %d acknowledged" %
            (" ".join(primaries), sent, acked))
        moves = [(a, b) for a, b in zip(primaries, primaries[1:])]
        self.check("the schedule moved the primary at least 3 times", len(moves) >= 3,
                   str(primaries))
        # "Next" is the next LIVE, caught-up node of the rotation: right after
        # the start a node may still be in its handshake and be passed over.
        in_order = [(a, b) for a, b in moves if rotation[(rotation.index(a) + 1) % 3] == b]
        self.check("scheduled moves go to the next of the rotation (n1 -> n3 -> n2 -> n1)",
                   len(in_order) >= 3, str(primaries))
        self.check("zero failed writes under the schedule", not failed and sent == acked,
                   str(failed[:5]))
        traced = 0
        for n, node in self.nodes.items():
            with open(node.errpath, "rb") as f:
                f.seek(marks[n])
                traced += sum(1 for line in f.read().decode("utf-8", "replace").splitlines()
                              if "switchover (scheduled) to " in line and ": done, " in line)
        self.check("scheduled switchovers are traced", traced >= 3, str(traced))
        for name, node in self.nodes.items():
            rc = node.terminate()
            self.check("%s: tandemd exits 0 on SIGTERM (schedule on)" % name, rc == 0, str(rc))

    def teardown(self):
        for w in self.writers:
            w.stop.set()
        for node in self.nodes.values():
            node.kill()
        if self.failures:
            for node in self.nodes.values():
                log("---- %s trace (last lines)\n%s" % (node.name, node.tail()))
        if self.opts.keep or self.failures:
            log("kept " + self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def main(self):
        try:
            self.setup()
            if "u" in self.opts.phases:
                self.phase_usage()
            if "a" in self.opts.phases:
                self.phase_switchovers()
            if "c" in self.opts.phases:
                self.phase_refusals_alive()
            if "b" in self.opts.phases:
                self.phase_failover()
            self.check_end()
            if "s" in self.opts.phases:
                self.phase_schedule()
        except Exception as e:  # Reported as a failure, after teardown.
            import traceback
            traceback.print_exc()
            self.failures.append("exception: %s" % e)
        finally:
            self.teardown()
        if self.failures:
            log("%d checks failed: %s" % (len(self.failures), ", ".join(self.failures[:10])))
            return 1
        log("all checks passed")
        return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tandem")
    p.add_argument("tandemd")
    p.add_argument("--switchovers", type=int, default=100)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--rate", type=float, default=25.0, help="records/s per writer")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--phases", default="uacbs",
                   help="which of usage, (a), (c1, c2), (c3 and b), schedule to run")
    opts = p.parse_args()
    return Test(opts).main()


if __name__ == "__main__":
    sys.exit(main())
