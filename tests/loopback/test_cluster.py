#!/usr/bin/env python3
"""tests/loopback/test_cluster.py: three real tandemd nodes on 127.0.0.1, a
fault proxy between every pair, writers appending all along while a seeded
fault schedule runs (RELIABILITY S8 on loopback; DESIGN "Replication").

Usage: test_cluster.py TANDEM TANDEMD FAULT_PROXY [--duration S] [--seed N]
                       [--lossyfs LOSSYFS] [--rate R] [--keep]

Method:
- `tandem ca`, `tandem init` three nodes n1 (the primary of epoch 1), n2, n3;
  every tandem.conf gets write_deadline_ms = 2000 and peer addresses that go
  through a fault_proxy: n1 dials n2 and n3, n2 dials n3 (PROTOCOL.md §2), so
  the proxies are p12 (n1 -> n2), p13 (n1 -> n3) and p23 (n2 -> n3).
- Writers: five `tandem append` processes fed over pipes at --rate records/s
  each: three through the primary n1 (two on its local socket, one over TCP +
  TLS with a client certificate), one through backup n2's local socket and one
  through backup n3 over TCP (both backups forward to the primary). Where
  tandemd refuses TLS clients, every writer uses the local socket. Each record
  has a unique message_id; every printed {"lsn": N} is paired with the record
  it answers (line k of the output answers input line k). A writer whose
  process fails starts a new one with new records: what the failed process
  was sent and did not acknowledge is counted as failed (it may be stored).
  A node is SIGKILLed only while no local-socket writer is between starting
  `tandem append` and its connect: with no tandemd, `tandem append --node DIR`
  would open the directory itself and write without replication.
- Faults, for --duration seconds (default 60) from a schedule drawn from
  --seed (printed; pass it again to replay the schedule): SIGKILL a backup
  and restart it; drop, delay or cut one proxy and heal it; SIGSTOP a backup
  and continue it; SIGKILL both backups at once (writes must then fail within
  the deadline, and nothing written after both died is acknowledged before
  one of them restarts); SIGKILL the primary and restart it.
- With --lossyfs, n2's and n3's directories live on lossyfs mounts (the FUSE
  file system of tests/lib/lossyfs.c that loses unsynced data on "cut"). After
  the schedule, two power losses of both backups at once, during the writes,
  each followed by SIGKILL of the primary (its page cache survives, as in a
  crash): (1) `lossyfs --send cut` on both mounts at once; (2) both backups'
  disks hang (lossyfs SIGSTOPped: no write or fdatasync completes) for 0.6 s,
  then their power goes (lossyfs SIGKILLed), which catches for certain a
  backup that acknowledges before its fdatasync. After each, before any node
  restarts, a copy of every node directory is read (reindexed), and every LSN
  acknowledged so far must be held, with its record, by at least min_copies
  (2) nodes, the primary among them. Then everything restarts.
- Epochs are sampled from every running node's `tandem status --json` every
  half second during the run.
Checks at the end, once every fault is healed and every node restarted:
- every node's last_lsn reaches the primary's (bounded wait), and the self
  chain_hash at that LSN is the same on all three nodes;
- no node's epoch (its own, and the cluster epoch it reports) ever decreased;
- tandemd exits 0 within 10 s of SIGTERM; `tandem verify --node DIR` exits 0;
- exact: on a copy of each node directory (reindexed, so that a backup's
  trailing index cannot hide records), every acknowledged LSN holds exactly
  the record acknowledged for it, LSNs are dense from 1 to last_lsn, and the
  three nodes hold the same records at the same LSNs;
- no LSN was acknowledged twice, and each append's LSNs increase;
- after the heal, every writer gets acknowledgements again.
Every process started here is killed in teardown, also on failure.
"""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_lib import (free_ports, log, run, set_write_deadline, split_generated,  # noqa: E402
                         tail_lines, wait_or_kill, wait_tandemd)

CUSTOMERS = 20
MIN_COPIES = 2
DEADLINE_MS = 2000
STALL_S = 0.6  # How long the backups' disks hang before their power goes.
NODES = ("n1", "n2", "n3")
PROXIES = (("n1", "n2"), ("n1", "n3"), ("n2", "n3"))  # (dialer, acceptor)


class Checks:
    def __init__(self):
        self.failures = []
        self.lock = threading.Lock()

    def check(self, name, ok, detail=""):
        with self.lock:
            if ok:
                log("ok   " + name)
            else:
                log("FAIL " + name + (": " + detail if detail else ""))
                self.failures.append(name)
        return ok


class Proxy:
    def __init__(self, exe, work, dialer, acceptor, listen_port, target_port):
        self.name = "p" + dialer[1:] + acceptor[1:]
        self.ctl = os.path.join(work, self.name + ".ctl")
        self.listen_port = listen_port
        self.errf = open(os.path.join(work, self.name + ".err"), "ab")
        self.proc = subprocess.Popen([exe, str(listen_port), str(target_port), self.ctl],
                                     stdout=subprocess.DEVNULL, stderr=self.errf)
        for _ in range(200):
            if os.path.exists(self.ctl):
                return
            time.sleep(0.02)
        raise RuntimeError(self.name + ": no control socket")

    def control(self, line):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(5)
        try:
            c.connect(self.ctl)
        except OSError as e:
            c.close()
            rc = self.proc.poll()
            raise RuntimeError("%s: control socket: %s (proxy %s)" %
                               (self.name, e, "still running" if rc is None else
                                "exited with status %d" % rc)) from e
        c.sendall((line + "\n").encode())
        reply = c.makefile().readline().strip()
        c.close()
        return reply


class Lossy:
    """One lossyfs mount: BACKING is the disk, MOUNT what the node sees."""

    def __init__(self, exe, work, name):
        self.exe = exe
        self.disk = os.path.join(work, name + ".disk")
        self.mnt = os.path.join(work, name + ".mnt")
        self.sock = os.path.join(work, name + ".lossyfs")
        self.errpath = os.path.join(work, name + ".lossyfs.err")
        os.makedirs(self.disk, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)
        self.proc = None

    def boot(self):
        errf = open(self.errpath, "ab")
        self.proc = subprocess.Popen([self.exe, self.disk, self.mnt, self.sock],
                                     stdout=subprocess.DEVNULL, stderr=errf)
        errf.close()
        for _ in range(200):
            if subprocess.run(["mountpoint", "-q", self.mnt]).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("lossyfs did not mount " + self.mnt)

    def send(self, command):
        r = run([self.exe, "--send", self.sock, command], timeout=30)
        return r.stdout.strip()

    def reap(self):
        """After a cut (and after every process on the mount was killed)."""
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "killed"
            self.proc = None
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)


class Node:
    def __init__(self, t, name, root, port, tandem, tandemd):
        self.t = t
        self.name = name
        self.dir = os.path.join(root, name)
        self.port = port
        self.tandem = tandem
        self.tandemd = tandemd
        self.errpath = os.path.join(t.work, name + ".err")
        self.proc = None
        self.up = False
        self.paused = False
        self.lock = threading.Lock()  # Held to start, stop, kill, sample, and to start a writer.
        self.starts = 0

    def start(self):
        errf = open(self.errpath, "ab")
        errf.write(("--- start %d at t=%.2f\n" % (self.starts, self.t.now())).encode())
        errf.flush()
        self.proc = subprocess.Popen([self.tandemd, self.dir], stdout=subprocess.DEVNULL,
                                     stderr=errf)
        errf.close()
        self.starts += 1
        wait_tandemd(self.proc, self.dir, self.name, self.tail)
        self.up = True

    def kill(self, sig=signal.SIGKILL):
        self.up = False
        self.paused = False
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            self.proc.wait()
        self.proc = None

    def terminate(self, timeout=10):
        """SIGTERM; (exit status, seconds)."""
        self.up = False
        if self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = wait_or_kill(self.proc, timeout)
        self.proc = None
        return rc, time.monotonic() - start

    def status(self, timeout=10):
        try:
            r = run([self.tandem, "status", "--node", self.dir, "--json"], timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def tail(self, lines=25):
        return tail_lines(self.errpath, lines)


def self_node(doc):
    """The node's own entry: "self": true through tandemd; the entry whose id is
    the document's "self" when the CLI opened the directory."""
    for n in doc.get("nodes", []):
        if n.get("self") or ("self" not in n and n.get("id") == doc.get("self")):
            return n
    return None


class Writer(threading.Thread):
    """Feeds one `tandem append --node DIR` at a time and pairs LSNs with records."""

    def __init__(self, t, wid, node, transport):
        super().__init__(daemon=True)
        self.t = t
        self.wid = wid
        self.node = node
        self.transport = transport  # "local" (DIR/tandemd.sock) or "tcp" (TLS, client cert)
        self.next_k = 0
        self.stop = threading.Event()
        self.procs = 0
        self.exits = []  # (t, rc, first stderr line, sent, acked)
        self.acks = 0
        self.proc = None
        self.last_ack_t = None

    def connected(self, proc):
        """True once the CLI holds a connected socket and no file of the node."""
        fd_dir = "/proc/%d/fd" % proc.pid
        seen = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            sock = False
            own = False
            try:
                for fd in os.listdir(fd_dir):
                    try:
                        target = os.readlink(os.path.join(fd_dir, fd))
                    except OSError:
                        continue
                    if target.startswith("socket:"):
                        sock = True
                    elif target.startswith(self.node.dir + "/"):
                        own = True
            except OSError:
                return False
            if own:
                return False
            seen = seen + 1 if sock else 0
            if seen >= 3:
                return True
            time.sleep(0.01)
        return False

    def run(self):
        while not self.stop.is_set():
            if not self.node.lock.acquire(timeout=0.1):
                continue
            proc = None
            try:
                if self.node.up and not self.node.paused and not self.t.writers_hold.is_set():
                    errf = tempfile.TemporaryFile()
                    if self.transport == "tcp":
                        addr = ["--node", "127.0.0.1:%d" % self.node.port,
                                "--cert", self.t.client_cert]
                    else:
                        addr = ["--node", self.node.dir]
                    proc = subprocess.Popen([self.t.tandem, "append"] + addr,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=errf)
                    self.proc = proc
                    self.procs += 1
                    if self.transport == "local" and not self.connected(proc):
                        # Never leave it running: it may be opening the directory.
                        proc.kill()
                        proc.wait()
                        self.exits.append((self.t.now(), "no connect", "", 0, 0))
                        proc = self.proc = None
            finally:
                self.node.lock.release()
            if proc is None:
                time.sleep(0.05)
                continue
            self.feed(proc, errf)
            self.proc = None
            if not self.stop.is_set():
                time.sleep(0.1)

    def feed(self, proc, errf):
        sent = []  # (k, t_sent) in input order
        acked = [0]

        def reader():
            prev = 0
            for line in proc.stdout:
                now = self.t.now()
                try:
                    lsn = json.loads(line)["lsn"]
                except (ValueError, KeyError, TypeError):
                    self.t.checks.check("writer %d: stdout holds only LSN lines" % self.wid, False,
                                        repr(line))
                    continue
                i = acked[0]
                if i >= len(sent):
                    self.t.checks.check("writer %d: an LSN for a record sent" % self.wid, False,
                                        "lsn %d for input line %d" % (lsn, i + 1))
                    continue
                k, t_sent = sent[i]
                if lsn <= prev:
                    self.t.checks.check("writer %d: LSNs increase in input order" % self.wid,
                                        False, "%d after %d" % (lsn, prev))
                prev = lsn
                self.t.record_ack(lsn, self.wid, k, t_sent, now, self.node.name)
                acked[0] += 1
                self.acks += 1
                self.last_ack_t = now

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        fd = proc.stdin.fileno()
        os.set_blocking(fd, False)
        interval = self.t.chunk / self.t.rate
        next_t = time.monotonic()
        broken = False
        while not self.stop.is_set() and proc.poll() is None and not broken:
            now = time.monotonic()
            if now < next_t:
                time.sleep(min(next_t - now, 0.05))
                continue
            next_t = max(next_t + interval, now - 1.0)
            t_sent = self.t.now()
            ks = list(range(self.next_k, self.next_k + self.t.chunk))
            self.next_k += self.t.chunk
            data = "".join(self.t.record_line(self.wid, k) + "\n" for k in ks).encode()
            for k in ks:
                sent.append((k, t_sent))
            off = 0
            while off < len(data):
                try:
                    off += os.write(fd, data[off:])
                except BlockingIOError:
                    if proc.poll() is not None:
                        broken = True
                        break
                    time.sleep(0.005)
                except (BrokenPipeError, OSError):
                    broken = True
                    break
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            rc = proc.wait(timeout=DEADLINE_MS / 1000 + 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "hung, killed"
            proc.wait()
        rt.join(timeout=10)
        errf.seek(0)
        err = errf.read().decode("utf-8", "replace").strip()
        errf.close()
        first = err.splitlines()[0] if err else ""
        self.exits.append((self.t.now(), rc, first, len(sent), acked[0]))
        self.t.record_unacked(len(sent) - acked[0])
        # Failures under faults are expected (counted and reported); not once
        # the writers are stopped after the heal.
        if rc != 0 and self.stop.is_set():
            self.t.late_failures.append((self.wid, rc, first))


class Test:
    def __init__(self, opts):
        self.opts = opts
        self.tandem = opts.tandem
        self.checks = Checks()
        self.t0 = time.monotonic()
        self.work = tempfile.mkdtemp(prefix="tandem-cluster-")
        self.rng = random.Random(opts.seed)
        self.rate = opts.rate
        self.chunk = max(1, int(opts.rate / 20))
        self.lock = threading.Lock()
        self.acked = []  # (lsn, wid, k, t_sent, t_ack, node)
        self.unacked = 0
        self.late_failures = []
        self.faults = []  # (t, description)
        self.samples = []  # (t, node, self epoch, cluster epoch, primary, role)
        self.writers = []
        self.writers_hold = threading.Event()
        self.nodes = {}
        self.proxies = {}
        self.lossy = {}
        self.templates = []
        self.customers = []
        self.monitor_stop = threading.Event()
        self.both_down = []  # (t_dead, t_restart)
        self.powercuts = []  # (kind, acknowledged LSNs checked, {nodes holding: count})
        self.parsed = {}

    def now(self):
        return time.monotonic() - self.t0

    # ---- records ---------------------------------------------------------------

    def record(self, wid, k):
        """Record k of writer wid (wid -1: the customers) as a dict: what a query
        prints for it, without "lsn"."""
        if wid < 0:
            return json.loads(self.customers[k])
        rec = dict(self.templates[(k * 31 + wid * 7) % len(self.templates)])
        rec["message_id"] = "<s%d.w%d.k%d@loopback.test>" % (self.opts.seed, wid, k)
        return rec

    def record_line(self, wid, k):
        return json.dumps(self.record(wid, k), separators=(",", ":"))

    def record_ack(self, lsn, wid, k, t_sent, t_ack, node):
        with self.lock:
            self.acked.append((lsn, wid, k, t_sent, t_ack, node))

    def record_unacked(self, n):
        with self.lock:
            self.unacked += n

    def fault(self, text):
        self.faults.append((self.now(), text))
        log("     t=%6.2f %s" % (self.now(), text))

    # ---- setup -----------------------------------------------------------------

    def setup(self):
        o = self.opts
        listen = dict(zip(NODES, free_ports(3)))
        pports = dict(zip(PROXIES, free_ports(3)))
        ca = os.path.join(self.work, "ca")
        r = run([self.tandem, "ca", ca, "--cluster", "c1"])
        assert r.returncode == 0, r.stderr
        roots = {}
        for name in NODES:
            roots[name] = self.work
            if o.lossyfs and name != "n1":
                fs = Lossy(o.lossyfs, self.work, name)
                fs.boot()
                self.lossy[name] = fs
                roots[name] = fs.mnt
        for name in NODES:
            node = Node(self, name, roots[name], listen[name], self.tandem, o.tandemd)
            self.nodes[name] = node
            args = [self.tandem, "init", node.dir, "--cluster", "c1", "--node", name, "--listen",
                    "127.0.0.1:%d" % listen[name], "--ca", ca]
            for other in NODES:
                if other == name:
                    continue
                port = pports.get((name, other), listen[other])
                args += ["--peer", "%s=127.0.0.1:%d" % (other, port)]
            r = run(args)
            assert r.returncode == 0, r.stderr
            set_write_deadline(node.dir, DEADLINE_MS, sync=True)
        for fs in self.lossy.values():
            self.checks.check("lossyfs sync after init answers ok", fs.send("sync") == "ok")
        for (a, b), port in pports.items():
            p = Proxy(o.fault_proxy, self.work, a, b, port, listen[b])
            self.proxies[p.name] = p
        self.client_cert = os.path.join(self.work, "client")
        r = run([self.tandem, "ca", ca, "--client", "loop", "--out", self.client_cert])
        assert r.returncode == 0, r.stderr
        gen = run([self.tandem, "generate", "--seed", str(o.seed), "--customers", str(CUSTOMERS),
                   "--count", "3000"])
        assert gen.returncode == 0, gen.stderr
        customers, templates = split_generated(gen.stdout)
        self.customers += customers
        self.templates += templates
        for name in NODES:
            with self.nodes[name].lock:
                self.nodes[name].start()
        # The customers first, through the primary (LSN 1..CUSTOMERS).
        r = run([self.tandem, "append", "--node", self.nodes["n1"].dir],
                input="".join(c + "\n" for c in self.customers), timeout=60)
        self.checks.check("customers appended", r.returncode == 0, r.stderr.strip())
        for k, line in enumerate(r.stdout.splitlines()):
            self.record_ack(json.loads(line)["lsn"], -1, k, 0.0, self.now(), "n1")

    def tcp_clients(self):
        """Does tandemd take TLS clients on its listen port (`--node HOST:PORT --cert`)?"""
        r = run([self.tandem, "status", "--node", "127.0.0.1:%d" % self.nodes["n1"].port,
                 "--cert", self.client_cert, "--json"], timeout=30)
        try:
            ok = r.returncode in (0, 1) and json.loads(r.stdout).get("self") == "n1"
        except ValueError:
            ok = False
        if not ok:
            log("note: TLS clients refused (%s): every writer uses the local socket" %
                r.stderr.strip()[:200])
        return ok

    # ---- monitor ---------------------------------------------------------------

    def monitor(self):
        while not self.monitor_stop.is_set():
            for node in self.nodes.values():
                if not node.lock.acquire(timeout=0.05):
                    continue
                try:
                    if not node.up or node.paused:
                        continue
                    doc = node.status(timeout=5)
                finally:
                    node.lock.release()
                if doc is None:
                    continue
                me = self_node(doc)
                if me is None or not isinstance(me.get("epoch"), int) or \
                        not isinstance(doc.get("epoch"), int):
                    continue
                self.samples.append((self.now(), node.name, me.get("epoch"), doc.get("epoch"),
                                     doc.get("primary"), doc.get("role")))
            self.monitor_stop.wait(0.5)

    # ---- faults ----------------------------------------------------------------

    def restart(self, node):
        with node.lock:
            node.start()

    def kill_backup(self):
        node = self.nodes[self.rng.choice(("n2", "n3"))]
        hold = self.rng.uniform(1.0, 4.0)
        with node.lock:
            node.kill()
        self.fault("SIGKILL backup %s for %.1f s" % (node.name, hold))
        time.sleep(hold)
        self.restart(node)

    def kill_primary(self):
        node = self.nodes["n1"]
        hold = self.rng.uniform(0.5, 2.5)
        with node.lock:
            node.kill()
        self.fault("SIGKILL primary n1 for %.1f s" % hold)
        time.sleep(hold)
        self.restart(node)

    def pause_backup(self):
        node = self.nodes[self.rng.choice(("n2", "n3"))]
        hold = self.rng.uniform(1.0, 3.0)
        with node.lock:
            node.proc.send_signal(signal.SIGSTOP)
            node.paused = True
        self.fault("SIGSTOP backup %s for %.1f s" % (node.name, hold))
        time.sleep(hold)
        with node.lock:
            node.proc.send_signal(signal.SIGCONT)
            node.paused = False

    def proxy_fault(self, mode):
        p = self.proxies[self.rng.choice(sorted(self.proxies))]
        hold = self.rng.uniform(1.0, 4.0)
        cmd = mode
        if mode == "delay":
            cmd = "delay %d" % self.rng.choice((20, 100, 400, 1500))
        reply = p.control(cmd)
        self.checks.check("proxy %s '%s' answers ok" % (p.name, cmd), reply == "ok", reply)
        self.fault("proxy %s %s for %.1f s" % (p.name, cmd, hold))
        time.sleep(hold)
        reply = p.control("heal")
        if reply != "ok":
            self.checks.check("proxy %s heal answers ok" % p.name, False, reply)

    def kill_both_backups(self):
        b2, b3 = self.nodes["n2"], self.nodes["n3"]
        hold = DEADLINE_MS / 1000 + 2.0
        with b2.lock, b3.lock:
            b2.kill()
            b3.kill()
            t_dead = self.now()
        self.fault("SIGKILL both backups n2 n3 for %.1f s" % hold)
        time.sleep(hold)
        t_restart = self.now()
        self.both_down.append((t_dead, t_restart))
        self.restart(b2)
        self.restart(b3)

    def schedule(self):
        kinds = {
            "kill_backup": self.kill_backup,
            "proxy_drop": lambda: self.proxy_fault("drop"),
            "proxy_delay": lambda: self.proxy_fault("delay"),
            "proxy_cut": lambda: self.proxy_fault("cut"),
            "kill_both_backups": self.kill_both_backups,
            "pause_backup": self.pause_backup,
            "kill_primary": self.kill_primary,
        }
        required = ["kill_backup", "proxy_drop", "proxy_delay", "proxy_cut", "kill_both_backups"]
        self.rng.shuffle(required)
        extra = sorted(kinds)
        end = self.t0 + self.opts.duration
        plan = list(required)
        time.sleep(self.rng.uniform(1.0, 2.0))
        # Every required fault runs once (past the duration if it is short),
        # then random ones until the duration is over.
        while plan or time.monotonic() < end:
            kind = plan.pop(0) if plan else self.rng.choice(extra)
            kinds[kind]()
            if not plan and time.monotonic() >= end:
                break
            gap = self.rng.uniform(0.5, 2.0)
            time.sleep(gap if plan else min(gap, max(0.0, end - time.monotonic())))

    def heal_all(self):
        for p in self.proxies.values():
            p.control("heal")
        for node in self.nodes.values():
            with node.lock:
                if node.paused:
                    node.proc.send_signal(signal.SIGCONT)
                    node.paused = False
                if not node.up:
                    node.start()

    # ---- the power cut (lossyfs) -------------------------------------------------

    def power_cut(self, kind):
        """Power loss of both backups during the writes, then SIGKILL of the primary.
        kind "cut": lossyfs's cut (unsynced data lost, name operations not made
        durable undone). kind "stall": both backups' disks hang first (lossyfs
        SIGSTOPped, so no write or fdatasync completes) for STALL_S while the
        writes go on, then the power goes (lossyfs SIGKILLed: unsynced data lost,
        names kept); a backup that acknowledged what it had not synced is caught
        here for sure. Then, before any node restarts, every acknowledged LSN must
        be held by min_copies nodes, the primary among them."""
        time.sleep(2.0)  # Writes flow again after the schedule or the last cut.
        backups = [self.nodes["n2"], self.nodes["n3"]]
        primary = self.nodes["n1"]
        fss = [self.lossy[n.name] for n in backups]
        # Hold every node: no writer starts and no status runs on a hung mount.
        for node in backups + [primary]:
            node.lock.acquire()
        try:
            with self.lock:
                acked_before = len(self.acked)
            if kind == "cut":
                with concurrent.futures.ThreadPoolExecutor(2) as ex:
                    replies = list(ex.map(lambda fs: fs.send("cut"), fss))
                self.checks.check("power cut of both backups answers ok",
                                  replies == ["ok", "ok"], repr(replies))
                text = "power cut of n2 and n3 (lossyfs cut)"
            else:
                for fs in fss:
                    fs.proc.send_signal(signal.SIGSTOP)
                t_stall = self.now()
                time.sleep(STALL_S)
                with self.lock:
                    during = sum(1 for a in self.acked if a[4] > t_stall)
                for fs in fss:
                    fs.proc.kill()
                text = ("disks of n2 and n3 hung for %.1f s (%d LSNs acknowledged meanwhile), "
                        "then their power lost (lossyfs SIGKILL)" % (STALL_S, during))
            for node in backups:
                node.kill()
            primary.kill()
            self.fault(text + ", then SIGKILL of primary n1")
        finally:
            for node in backups + [primary]:
                node.lock.release()
        # Writers find their nodes down and wait; let every CLI notice.
        self.writers_hold.set()
        deadline = time.monotonic() + DEADLINE_MS / 1000 + 25
        while time.monotonic() < deadline and any(w.proc is not None for w in self.writers):
            time.sleep(0.05)
        self.checks.check("%s: every writer's append ended" % kind,
                          all(w.proc is None for w in self.writers))
        for name, fs in sorted(self.lossy.items()):
            rc = fs.reap()
            if kind == "cut":
                self.checks.check("lossyfs %s exits 0 after the cut" % name, rc == 0, repr(rc))
            fs.boot()
        with self.lock:
            acked = list(self.acked)
        log("     %d LSNs acknowledged before the power loss (%d more after it)" %
            (acked_before, len(acked) - acked_before))
        # Before any node restarts: what does each node's directory hold?
        holds = self.read_nodes(kind)
        counts = {}
        short = []
        not_on_primary = 0
        for lsn, wid, k, _, _, _ in acked:
            want = self.record(wid, k)
            n = sum(1 for h in holds.values() if h is not None and h[0].get(lsn) == want)
            counts[n] = counts.get(n, 0) + 1
            if n < MIN_COPIES:
                short.append(lsn)
            if holds["n1"] is None or holds["n1"][0].get(lsn) != want:
                not_on_primary += 1
        log("     %s: acknowledged LSNs by number of nodes holding them: %s; %s" %
            (kind, ", ".join("%d nodes: %d" % (n, c) for n, c in sorted(counts.items())),
             ", ".join("%s lsn 1..%d" % (name, h[1]) for name, h in sorted(holds.items())
                       if h is not None)))
        self.checks.check("%s: every acknowledged LSN is held by >= min_copies (%d) nodes" %
                          (kind, MIN_COPIES), not short,
                          "%d LSNs held by fewer, first %s" % (len(short), short[:10]))
        self.checks.check("%s: every acknowledged LSN is on the primary" % kind,
                          not_on_primary == 0, "%d are not" % not_on_primary)
        self.powercuts.append((kind, len(acked), counts))
        self.writers_hold.clear()
        for name in NODES:
            self.restart(self.nodes[name])
        self.fault("rebooted n2 and n3 (new lossyfs on the same disks), restarted all nodes")

    # ---- reading a node's copy ---------------------------------------------------

    def read_nodes(self, tag):
        """read_node for every node, side by side: {name: (held, last) or None}."""
        self.parsed = {}  # A printed line -> (lsn, record), shared by the nodes.
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as ex:
            futures = {n: ex.submit(self.read_node, node, tag) for n, node in self.nodes.items()}
            held = {n: f.result() for n, f in futures.items()}
        self.parsed = {}
        return held

    def read_node(self, node, tag):
        """Copy the node directory, rebuild the copy's index from its log, and read
        every record: ({lsn: record}, last_lsn), or None if it cannot be read."""
        started = time.monotonic()
        copy = os.path.join(self.work, "inspect-%s-%s" % (tag, node.name))
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(node.dir, copy, symlinks=True,
                        ignore=shutil.ignore_patterns("tandemd.sock", ".lossyfs-trash"))
        t_copy = time.monotonic() - started
        r = run([self.tandem, "reindex", copy], timeout=120)
        t_reindex = time.monotonic() - started - t_copy
        if not self.checks.check("%s: reindex of a copy of %s" % (tag, node.name),
                                 r.returncode == 0, (r.stdout + r.stderr).strip()):
            return None
        held = {}
        dup = []
        for c in range(1, CUSTOMERS + 1):
            q = run([self.tandem, "query", "--node", copy, "--customer", str(c)], timeout=120)
            if q.returncode not in (0, 1):
                self.checks.check("%s: query of %s customer %d" % (tag, node.name, c), False,
                                  q.stderr.strip())
                return None
            lines = q.stdout.splitlines()
            q = run([self.tandem, "customer", "--node", copy, "--id", str(c)], timeout=60)
            for line in lines + q.stdout.splitlines():
                # Nodes print the same line for the same record at the same LSN:
                # parse each distinct line once (the records are never modified).
                hit = self.parsed.get(line)
                if hit is None:
                    rec = json.loads(line)
                    hit = self.parsed[line] = (rec.pop("lsn"), rec)
                lsn, rec = hit
                if lsn in held:
                    dup.append(lsn)
                held[lsn] = rec
        self.checks.check("%s: %s: no LSN holds two records" % (tag, node.name), not dup,
                          str(dup[:10]))
        st = run([self.tandem, "status", "--node", copy, "--json"], timeout=60)
        try:
            last = self_node(json.loads(st.stdout))["last_lsn"]
        except (ValueError, TypeError, KeyError):
            self.checks.check("%s: status of the copy of %s" % (tag, node.name), False,
                              st.stderr.strip())
            return None
        missing = [lsn for lsn in range(1, last + 1) if lsn not in held]
        extra = [lsn for lsn in held if lsn > last]
        self.checks.check("%s: %s: LSNs dense from 1 to last_lsn %d" % (tag, node.name, last),
                          not missing and not extra,
                          "missing %d (first %s), beyond last %d" %
                          (len(missing), missing[:10], len(extra)))
        shutil.rmtree(copy, ignore_errors=True)
        log("     %s: read %d records of %s in %.1f s (copy %.1f s, reindex %.1f s)" %
            (tag, len(held), node.name, time.monotonic() - started, t_copy, t_reindex))
        return held, last

    # ---- the end -----------------------------------------------------------------

    def converge(self):
        deadline = time.monotonic() + 60
        docs = {}
        while time.monotonic() < deadline:
            docs = {n: node.status() for n, node in self.nodes.items()}
            selfs = {n: self_node(d) if d else None for n, d in docs.items()}
            if all(selfs.values()):
                lasts = {s["last_lsn"] for s in selfs.values()}
                durables = {s["durable_lsn"] for s in selfs.values()}
                if len(lasts) == 1 and durables == lasts:
                    return docs, selfs
            time.sleep(0.5)
        return docs, None

    def check_end(self):
        with self.lock:
            acked = list(self.acked)
        # No LSN acknowledged twice.
        seen = {}
        twice = []
        for lsn, wid, k, *_ in acked:
            if lsn in seen:
                twice.append(lsn)
            seen[lsn] = (wid, k)
        self.checks.check("no LSN was acknowledged for two records", not twice, str(twice[:10]))
        # Both backups down: the deadline, and no acknowledgement with one copy.
        for t_dead, t_restart in self.both_down:
            bad = [(lsn, round(ts, 2), round(ta, 2)) for lsn, _, _, ts, ta, _ in acked
                   if ts > t_dead and ta < t_restart]
            self.checks.check("both backups down at t=%.1f: nothing written after they died was "
                              "acknowledged before they restarted" % t_dead, not bad,
                              "%d acknowledged, first %s" % (len(bad), bad[:5]))
            for w in self.writers:
                if w.node.name != "n1":
                    continue
                ends = [e for e in w.exits if t_dead < e[0] <= t_restart + 1.0]
                failed = [e for e in ends if e[1] != 0]
                first = failed[0] if failed else None
                ok = first is not None and first[0] - t_dead <= DEADLINE_MS / 1000 + 3.0
                self.checks.check(
                    "both backups down at t=%.1f: writer %d's append fails within the deadline "
                    "(%d ms + 3 s)" % (t_dead, w.wid, DEADLINE_MS), ok,
                    "exits %s" % [(round(e[0] - t_dead, 2), e[1], e[2][:80]) for e in ends])
        # Epochs never decreased.
        by_node = {}
        decreased = []
        for t, name, ep, cep, primary, role in self.samples:
            prev = by_node.get(name)
            if prev is not None and (ep < prev[0] or cep < prev[1]):
                decreased.append((round(t, 2), name, prev, (ep, cep)))
            by_node[name] = (ep, cep)
        self.checks.check("epochs only grew (%d status samples)" % len(self.samples),
                          not decreased and len(self.samples) > 0, str(decreased[:5]))
        epochs = sorted({s[3] for s in self.samples if s[3] is not None})
        primaries = sorted({s[4] for s in self.samples if s[4]})
        log("     epochs seen: %s; primaries named: %s" % (epochs, primaries))

        # Converge.
        docs, selfs = self.converge()
        if not self.checks.check("every node's last_lsn reaches the primary's within 60 s",
                                 selfs is not None,
                                 json.dumps({n: (self_node(d) or {}).get("last_lsn") if d else None
                                             for n, d in docs.items()})):
            return
        last = selfs["n1"]["last_lsn"]
        hashes = {n: s.get("chain_hash") for n, s in selfs.items()}
        self.checks.check("chain hashes at lsn %d agree on all nodes" % last,
                          len(set(hashes.values())) == 1 and None not in hashes.values(),
                          json.dumps(hashes))
        for n, d in docs.items():
            self.checks.check("%s: health healthy after the heal" % n, d.get("health") == "healthy",
                              "%s %s" % (d.get("health"), (self_node(d) or {}).get("failed")))
        for n, node in self.nodes.items():
            rc, secs = node.terminate()
            self.checks.check("%s: tandemd exits 0 within 10 s of SIGTERM" % n, rc == 0,
                              "rc %s after %.1f s" % (rc, secs))
        for n, node in self.nodes.items():
            r = run([self.tandem, "verify", "--node", node.dir], timeout=120)
            self.checks.check("%s: tandem verify passes" % n, r.returncode == 0,
                              (r.stdout + r.stderr).strip()[-300:])
            st = run([self.tandem, "status", "--node", node.dir, "--json"])
            try:
                me = self_node(json.loads(st.stdout))
                log("     %s stopped: last_lsn %d, index_lsn %d" %
                    (n, me["last_lsn"], me.get("index_lsn", -1)))
            except (ValueError, TypeError, KeyError):
                pass
        # Exact: every acknowledged LSN holds its record on every node.
        holds = self.read_nodes("end")
        for n, h in holds.items():
            if h is None:
                continue
            held, node_last = h
            self.checks.check("%s: last_lsn after the stop is %d" % (n, last), node_last == last,
                              str(node_last))
            wrong = []
            for lsn, wid, k, *_ in acked:
                if held.get(lsn) != self.record(wid, k):
                    wrong.append((lsn, wid, k))
            self.checks.check("%s: every acknowledged record (%d) is there at its LSN" %
                              (n, len(acked)), not wrong,
                              "%d missing or different, first %s" % (len(wrong), wrong[:5]))
        if all(holds.values()):
            ref = holds["n1"][0]
            for n in ("n2", "n3"):
                diff = [lsn for lsn in set(ref) | set(holds[n][0])
                        if ref.get(lsn) != holds[n][0].get(lsn)]
                self.checks.check("%s holds the same records at the same LSNs as n1" % n,
                                  not diff, "%d differ, first %s" % (len(diff), sorted(diff)[:10]))

    def main(self):
        o = self.opts
        log("# test_cluster: seed %d (replay: --seed %d), duration %d s, %d writers at %d "
            "records/s each, lossyfs %s, work %s" %
            (o.seed, o.seed, o.duration, len(o.writers), o.rate, o.lossyfs or "off", self.work))
        self.setup()
        log("     cluster up: n1 %d, n2 %d, n3 %d; proxies %s" %
            (self.nodes["n1"].port, self.nodes["n2"].port, self.nodes["n3"].port,
             ", ".join("%s :%d" % (p.name, p.listen_port) for p in self.proxies.values())))
        tcp = self.tcp_clients()
        for wid, (name, transport) in enumerate(o.writers):
            if transport == "tcp" and not tcp:
                transport = "local"
            w = Writer(self, wid, self.nodes[name], transport)
            self.writers.append(w)
            w.start()
        mon = threading.Thread(target=self.monitor, daemon=True)
        mon.start()
        self.schedule()
        self.heal_all()
        self.fault("healed every proxy, restarted every node")
        if self.lossy:
            self.power_cut("cut")
            self.power_cut("stall")
        else:
            log("     skip power-cut phase (no --lossyfs)")
        # Writers must be acknowledged again after the heal.
        t_heal = self.now()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(w.last_ack_t is not None and w.last_ack_t > t_heal for w in self.writers):
                break
            time.sleep(0.1)
        for w in self.writers:
            self.checks.check("writer %d (%s) is acknowledged again after the heal" %
                              (w.wid, w.node.name),
                              w.last_ack_t is not None and w.last_ack_t > t_heal,
                              "last ack at %s" % w.last_ack_t)
        time.sleep(1.0)
        for w in self.writers:
            w.stop.set()
        for w in self.writers:
            w.join(timeout=DEADLINE_MS / 1000 + 30)
            self.checks.check("writer %d stopped" % w.wid, not w.is_alive())
        self.checks.check("no append failed after the heal", not self.late_failures,
                          str(self.late_failures[:5]))
        self.monitor_stop.set()
        mon.join(timeout=15)
        self.check_end()
        self.summary()

    def summary(self):
        with self.lock:
            acked = len(self.acked)
        log("# summary (seed %d)" % self.opts.seed)
        log("     acknowledged writes: %d (%d customers, then messages)" % (acked, CUSTOMERS))
        log("     failed writes (sent, not acknowledged; expected under faults): %d" % self.unacked)
        causes = {}
        for w in self.writers:
            for t, rc, first, sent, got in w.exits:
                if rc == 0:
                    continue
                key = first.split(" (no LSN")[0]
                key = key.split(": line ", 1)[-1]
                key = key.split(": ", 1)[-1] if key[:1].isdigit() else key
                key = key[:110]
                if key not in causes:
                    causes[key] = [0, "w%d@%s/%s t=%.1f: %s" % (w.wid, w.node.name, w.transport,
                                                               t, first)]
                causes[key][0] += 1
        log("     failed append processes: %d, by cause (first instance in full):" %
            sum(n for n, _ in causes.values()))
        for cause, (n, example) in sorted(causes.items(), key=lambda x: -x[1][0]):
            log("       %4d  %s\n             %s" % (n, cause, example))
        log("     append processes: %s" % ", ".join("w%d@%s/%s %d" % (w.wid, w.node.name,
                                                                        w.transport, w.procs)
                                                   for w in self.writers))
        log("     faults injected: %d" % len(self.faults))
        for t, text in self.faults:
            log("       t=%6.2f %s" % (t, text))
        for kind, n, counts in self.powercuts:
            log("     power loss (%s): %d acknowledged LSNs checked, held by %s" %
                (kind, n, ", ".join("%d nodes: %d" % (k, c) for k, c in sorted(counts.items()))))
        log("     node starts: %s" % ", ".join("%s %d" % (n, node.starts)
                                              for n, node in self.nodes.items()))

    def teardown(self):
        self.monitor_stop.set()
        for node in self.nodes.values():
            node.up = False
        for w in self.writers:
            w.stop.set()
            p = w.proc
            if p is not None and p.poll() is None:
                p.kill()
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
        for p in self.proxies.values():
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
        for w in self.writers:
            w.join(timeout=5)
        for fs in self.lossy.values():
            fs.kill()
        if self.checks.failures:
            for node in self.nodes.values():
                log("--- %s stderr (last lines) ---\n%s" % (node.name, node.tail(40)))
        if self.opts.keep:
            log("     kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tandem")
    ap.add_argument("tandemd")
    ap.add_argument("fault_proxy")
    ap.add_argument("--duration", type=int, default=60, help="seconds of faults (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="schedule seed (default: random)")
    ap.add_argument("--rate", type=int, default=150, help="records/s per writer (default 150)")
    ap.add_argument("--lossyfs", default=None, help="lossyfs binary: backups on lossyfs mounts")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()
    if opts.seed is None:
        opts.seed = random.SystemRandom().randrange(1, 1 << 31)
    # Three writers through the primary, one through each backup (forwarded);
    # "tcp" falls back to "local" where tandemd refuses TLS clients.
    opts.writers = [("n1", "local"), ("n1", "tcp"), ("n1", "local"), ("n2", "local"),
                    ("n3", "tcp")]
    if opts.lossyfs and (os.geteuid() != 0 or not os.path.exists("/dev/fuse")):
        log("note: --lossyfs needs root and /dev/fuse: power-cut phase skipped")
        opts.lossyfs = None
    t = Test(opts)
    start = time.monotonic()
    # A timeout (meson sends SIGTERM) still runs the teardown below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        t.main()
    except BaseException as e:  # Report, then tear down: a crash or SIGTERM is a failure.
        import traceback
        traceback.print_exc()
        t.checks.check("the test ran to its end", False, repr(e))
    finally:
        t.teardown()
    log("# %s in %.1f s (seed %d)" % ("FAILED" if t.checks.failures else "passed",
                                      time.monotonic() - start, opts.seed))
    sys.exit(1 if t.checks.failures else 0)


if __name__ == "__main__":
    main()
