#!/usr/bin/env python3
"""tests/loopback/test_security.py: a running 2-node cluster refuses peers and
streams it must not trust (RELIABILITY S12 cases 1, 4, 5 and pre-auth
garbage; DESIGN "Replication": "a node or client without the cluster's
credentials learns nothing and changes nothing"; PROTOCOL.md §2.1).

Usage: test_security.py TANDEM TANDEMD [FAULT_PROXY]   (FAULT_PROXY unused)

Method: nodes n1 (primary) and n2 (backup) on 127.0.0.1; n1 dials n2 through a
small TCP recorder in this script, which forwards the live link and keeps the
bytes n1 sent, so that the test holds a complete legitimate node handshake (and
the frames after it) to replay. The records written first are replicated. Then,
against the listen ports:
 1. `openssl s_client` with a node certificate from ANOTHER CA (a second
    `tandem ca`, a node directory initialised with it, named like a real peer:
    n1 against n2's port, n2 against n1's);
 2. `openssl s_client` with no certificate;
 3. garbage bytes on a raw socket;
 4. the first half of a ClientHello (n1's recorded one), then close;
 5. the recorded stream of n1's legitimate link, replayed raw to n2's port;
    and the recorded bytes of an `openssl s_client` session with a client
    certificate of the cluster CA (`tandem ca --client`; recorded through the
    same recorder to n2, which accepts it), replayed raw.
Each must be refused: one trace line naming the cause on the target's stderr
(grepped per case), the openssl client sees an alert and no data. Afterwards:
both nodes' last_lsn, chain_hash and epoch are unchanged, the n1-n2 link was
never dropped or replaced (no new "established"/"closing" line for it, link
"up"/"live" in status), both tandemd still run, and an append through each node
(n2 forwards) is acknowledged and replicated.
Every process started here is killed in teardown, also on failure.
"""
import json
import os
import random
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
from cluster_lib import free_ports, log, run, wait_tandemd  # noqa: E402


failures = []


def check(name, ok, detail=""):
    if ok:
        log("ok   " + name)
    else:
        log("FAIL " + name + (": " + detail if detail else ""))
        failures.append(name)
    return ok


class Recorder:
    """Forwards 127.0.0.1:port -> 127.0.0.1:target and keeps, per connection, the
    bytes the dialing side sent."""

    def __init__(self, port, target):
        self.target = target
        self.sessions = []  # bytearray per accepted connection, client -> server
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(16)
        self.closed = False
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            try:
                t = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            buf = bytearray()
            with self.lock:
                self.sessions.append(buf)
                self.socks += [c, t]
            threading.Thread(target=self.pump, args=(c, t, buf), daemon=True).start()
            threading.Thread(target=self.pump, args=(t, c, None), daemon=True).start()

    def pump(self, src, dst, buf):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if buf is not None:
                with self.lock:
                    buf += data
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def session(self, i):
        with self.lock:
            return bytes(self.sessions[i]) if i < len(self.sessions) else b""

    def count(self):
        with self.lock:
            return len(self.sessions)

    def close(self):
        self.server.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


class Node:
    def __init__(self, tandem, tandemd, work, name, port):
        self.tandem = tandem
        self.tandemd = tandemd
        self.name = name
        self.dir = os.path.join(work, name)
        self.port = port
        self.errpath = os.path.join(work, name + ".err")
        self.proc = None

    def start(self):
        errf = open(self.errpath, "ab")
        self.proc = subprocess.Popen([self.tandemd, self.dir], stdout=subprocess.DEVNULL,
                                     stderr=errf)
        errf.close()
        wait_tandemd(self.proc, self.dir, self.name)

    def status(self):
        r = run([self.tandem, "status", "--node", self.dir, "--json"], timeout=15)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {}

    def lines(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()


def entry(doc, node_id):
    for n in doc.get("nodes", []):
        if n.get("id") == node_id:
            return n
    return {}


def s_client(args, timeout=10, ign_eof=True):
    """openssl s_client; with ign_eof it waits for the server to close, so that
    it reads the alert of a refusal."""
    cmd = ["openssl", "s_client", "-tls1_3"] + (["-ign_eof"] if ign_eof else []) + args
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % timeout
    return r.returncode, r.stdout.decode("utf-8", "replace")


def raw_send(port, data, wait=3.0):
    """Send data, half-close, and return what the node sent back before closing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(wait)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return got


def tls_records(data):
    """Split a byte stream into TLS records: [(type, body)]; stops at a partial one."""
    out = []
    i = 0
    while i + 5 <= len(data):
        size = int.from_bytes(data[i + 3:i + 5], "big")
        if i + 5 + size > len(data):
            break
        out.append((data[i], data[i:i + 5 + size]))
        i += 5 + size
    return out


def main():
    tandem, tandemd = sys.argv[1], sys.argv[2]
    if shutil.which("openssl") is None:
        log("skip: openssl is not installed")
        sys.exit(77)
    # A timeout (meson sends SIGTERM) still runs the teardown below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = tempfile.mkdtemp(prefix="tandem-security-")
    recorder = None
    nodes = {}
    start = time.monotonic()
    try:
        p1, p2, prec, prog = free_ports(4)
        ca, ca2 = os.path.join(work, "ca"), os.path.join(work, "ca2")
        assert run([tandem, "ca", ca, "--cluster", "c1"]).returncode == 0
        assert run([tandem, "ca", ca2, "--cluster", "c1"]).returncode == 0
        client = os.path.join(work, "client")
        r = run([tandem, "ca", ca, "--client", "sec", "--out", client])
        assert r.returncode == 0, r.stderr
        # n1 dials n2 through the recorder; n2 accepts n1.
        for name, port, peer in (("n1", p1, "n2=127.0.0.1:%d" % prec),
                                 ("n2", p2, "n1=127.0.0.1:%d" % p1)):
            r = run([tandem, "init", os.path.join(work, name), "--cluster", "c1", "--node", name,
                     "--listen", "127.0.0.1:%d" % port, "--ca", ca, "--peer", peer])
            assert r.returncode == 0, r.stderr
            nodes[name] = Node(tandem, tandemd, work, name, port)
        # Rogue nodes: the same cluster name and node ids, another CA.
        rogue = {}
        for name, port, peer in (("n1", prog, "n2=127.0.0.1:%d" % p2),
                                 ("n2", prog, "n1=127.0.0.1:%d" % p1)):
            d = os.path.join(work, "rogue-" + name)
            r = run([tandem, "init", d, "--cluster", "c1", "--node", name,
                     "--listen", "127.0.0.1:%d" % port, "--ca", ca2, "--peer", peer])
            assert r.returncode == 0, r.stderr
            rogue[name] = os.path.join(d, "tls")
        recorder = Recorder(prec, p2)
        nodes["n2"].start()
        nodes["n1"].start()
        log("# test_security: n1 :%d, n2 :%d (n1 dials n2 through the recorder :%d), work %s" %
            (p1, p2, prec, work))

        # Records, replicated.
        gen = run([tandem, "generate", "--seed", "7", "--customers", "5", "--count", "200"])
        r = run([tandem, "append", "--node", nodes["n1"].dir], input=gen.stdout, timeout=60)
        check("append before the attacks", r.returncode == 0 and len(r.stdout.splitlines()) == 205,
              r.stderr.strip())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            d1, d2 = nodes["n1"].status(), nodes["n2"].status()
            if (entry(d2, "n2").get("last_lsn") == 205 and
                    entry(d1, "n2").get("link_state") == "live"):
                break
            time.sleep(0.2)
        before = {n: node.status() for n, node in nodes.items()}
        for n, d in before.items():
            me = entry(d, n)
            check("%s holds lsn 205 before the attacks" % n, me.get("last_lsn") == 205,
                  json.dumps(me))
        check("n1 sees the link to n2 live before the attacks",
              entry(before["n1"], "n2").get("link_state") == "live",
              json.dumps(entry(before["n1"], "n2")))
        legit = recorder.session(0)
        recs = tls_records(legit)
        check("the recorder holds n1's legitimate link (a ClientHello and more)",
              len(recs) >= 3 and recs[0][0] == 0x16 and recs[0][1][5] == 1,
              "%d bytes, %d records" % (len(legit), len(recs)))
        # The s_client handshake with a cluster client certificate, recorded.
        n_before = recorder.count()
        rc, out = s_client(["-connect", "127.0.0.1:%d" % prec,
                            "-cert", os.path.join(client, "node.crt"),
                            "-key", os.path.join(client, "node.key"),
                            "-CAfile", os.path.join(client, "ca.crt")], ign_eof=False)
        time.sleep(0.3)
        client_session = recorder.session(n_before) if recorder.count() > n_before else b""
        alert = re.search(r"alert [a-z0-9 ]+", out or "")
        log("     s_client with the client certificate client:sec, recorded (%d bytes): %s" %
            (len(client_session), alert.group(0) if alert else "no alert before it closed"))
        check("the s_client session with a client certificate was recorded",
              len(tls_records(client_session)) >= 2)
        check("n2 accepted that client handshake (a legitimate session to replay)",
              any("client:sec: established" in l for l in nodes["n2"].lines()),
              str(nodes["n2"].lines()[-4:]))

        marks = {n: len(node.lines()) for n, node in nodes.items()}

        def traced(target, patterns, what):
            """One new line on the target's stderr names the cause."""
            deadline = time.monotonic() + 5
            new = []
            while time.monotonic() < deadline:
                new = nodes[target].lines()[marks[target]:]
                if any(any(p in l for p in patterns) for l in new):
                    break
                time.sleep(0.05)
            hit = [l for l in new if any(p in l for p in patterns)]
            check("%s: %s's stderr names the cause (%s)" % (what, target, " | ".join(patterns)),
                  len(hit) >= 1, "new lines: %s" % new[-6:])
            if hit:
                log("     %s" % hit[0])
            marks[target] = len(nodes[target].lines())

        # 1. A node certificate from another CA, named like a real peer.
        for target, name in (("n2", "n1"), ("n1", "n2")):
            tls = rogue[name]
            rc, out = s_client(["-connect", "127.0.0.1:%d" % nodes[target].port,
                                "-cert", os.path.join(tls, "node.crt"),
                                "-key", os.path.join(tls, "node.key"),
                                "-CAfile", os.path.join(tls, "ca.crt")])
            what = "node certificate %s from another CA against %s" % (name, target)
            check("%s: s_client is refused with an alert" % what,
                  rc not in (0, None) and "alert" in out, (out or "")[-300:])
            traced(target, ["not issued by the cluster CA"], what)
        # 2. No certificate.
        for target in ("n2", "n1"):
            rc, out = s_client(["-connect", "127.0.0.1:%d" % nodes[target].port,
                                "-CAfile", os.path.join(ca, "ca.crt")])
            what = "no client certificate against %s" % target
            check("%s: s_client is refused with an alert" % what,
                  rc not in (0, None) and "alert" in out, (out or "")[-300:])
            traced(target, ["sent no certificate"], what)
        # 3. Garbage.
        for target in ("n2", "n1"):
            # Fixed bytes (not a TLS record type first), so the cause is the same every run.
            junk = bytes([0x47]) + random.Random(target).randbytes(1499)
            got = raw_send(nodes[target].port, junk)
            what = "garbage bytes against %s" % target
            check("%s: nothing but an alert comes back" % what,
                  all(t == 0x15 for t, _ in tls_records(got)) and len(got) < 64,
                  got[:64].hex())
            traced(target, ["wrong version number", "not TLS", "unknown protocol",
                            "http request", "packet length too long"], what)
        # 4. The first half of a ClientHello, then close; and a whole one, then close
        # (what the node answers a ClientHello with, to compare the replay with).
        truncated = ["truncated", "closed during the handshake", "unexpected eof"]
        hello = recs[0][1]
        for target in ("n2", "n1"):
            got = raw_send(nodes[target].port, hello[:len(hello) // 2])
            what = "half a ClientHello against %s" % target
            check("%s: nothing comes back" % what, got == b"", got[:64].hex())
            traced(target, truncated, what)
        flight = raw_send(nodes["n2"].port, hello)
        what = "a whole ClientHello, then close, against n2"
        check("%s: the node's handshake flight comes back" % what,
              tls_records(flight)[:1] and tls_records(flight)[0][0] == 0x16, flight[:16].hex())
        traced("n2", truncated, what)
        # 5. Replays: the node answers the replayed ClientHello with a fresh key
        # share, so the replayed client flight cannot decrypt.
        replay = ["bad record mac", "decrypt"]
        got = raw_send(nodes["n2"].port, legit)
        what = "n1's recorded link (%d bytes) replayed against n2" % len(legit)
        check("%s: nothing comes back beyond the handshake flight and an alert" % what,
              len(got) <= len(flight) + 64, "%d bytes back, flight %d" % (len(got), len(flight)))
        traced("n2", replay, what)
        got = raw_send(nodes["n2"].port, client_session)
        what = "the recorded s_client session (%d bytes) replayed against n2" % len(client_session)
        check("%s: nothing comes back beyond the handshake flight and an alert" % what,
              len(got) <= len(flight) + 64, "%d bytes back, flight %d" % (len(got), len(flight)))
        traced("n2", replay, what)

        # Nothing changed, the link stayed up, and the nodes serve.
        time.sleep(0.5)
        after = {n: node.status() for n, node in nodes.items()}
        for n in nodes:
            b, a = entry(before[n], n), entry(after[n], n)
            check("%s: last_lsn, chain_hash and epoch unchanged" % n,
                  (b.get("last_lsn"), b.get("chain_hash"), b.get("epoch")) ==
                  (a.get("last_lsn"), a.get("chain_hash"), a.get("epoch")),
                  "before %s after %s" % ((b.get("last_lsn"), b.get("chain_hash"), b.get("epoch")),
                                          (a.get("last_lsn"), a.get("chain_hash"), a.get("epoch"))))
            check("%s: tandemd still runs" % n, nodes[n].proc.poll() is None)
        check("n1 sees the link to n2 up and live",
              entry(after["n1"], "n2").get("link") == "up" and
              entry(after["n1"], "n2").get("link_state") == "live",
              json.dumps(entry(after["n1"], "n2")))
        check("n2 sees the link to n1 up", entry(after["n2"], "n1").get("link") == "up",
              json.dumps(entry(after["n2"], "n1")))
        check("the recorder saw n1 dial only once (the link was never dropped)",
              recorder.count() == 2, "%d connections" % recorder.count())
        for n, node in nodes.items():
            lines = node.lines()
            est = [l for l in lines if "established" in l and ("n1" in l or "n2" in l)]
            check("%s: the n1-n2 link was established once" % n, len(est) == 1, str(est))
            closing = [l for l in lines if ("link n1" in l or "link n2" in l) and "closing" in l]
            check("%s: the n1-n2 link never closed" % n, not closing, str(closing[:3]))
        # Appends afterwards, through each node (n2 forwards to n1).
        recs_after = gen.stdout.splitlines()[5:7]
        want = 206
        for n in ("n1", "n2"):
            rec = json.loads(recs_after[want - 206])
            rec["message_id"] = "<after-%s@security.test>" % n
            r = run([tandem, "append", "--node", nodes[n].dir], input=json.dumps(rec) + "\n",
                    timeout=60)
            check("append through %s after the attacks: lsn %d" % (n, want),
                  r.returncode == 0 and r.stdout.strip() == '{"lsn": %d}' % want,
                  (r.stdout + r.stderr).strip())
            want += 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if entry(nodes["n2"].status(), "n2").get("last_lsn") == 207:
                break
            time.sleep(0.1)
        d1, d2 = nodes["n1"].status(), nodes["n2"].status()
        check("both appends replicated, chain hashes equal",
              entry(d1, "n1").get("last_lsn") == 207 and entry(d2, "n2").get("last_lsn") == 207 and
              entry(d1, "n1").get("chain_hash") == entry(d2, "n2").get("chain_hash"),
              "%s %s" % (entry(d1, "n1"), entry(d2, "n2")))
        for n, node in nodes.items():
            node.proc.send_signal(signal.SIGTERM)
            try:
                rc = node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = "hung"
            check("%s: tandemd exits 0 on SIGTERM" % n, rc == 0, str(rc))
    except BaseException as e:  # Report, then tear down: a crash or SIGTERM is a failure.
        import traceback
        traceback.print_exc()
        check("the test ran to its end", False, repr(e))
    finally:
        for node in nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
        if recorder is not None:
            recorder.close()
        if failures:
            for node in nodes.values():
                try:
                    log("--- %s stderr ---\n%s" % (node.name, "\n".join(node.lines()[-30:])))
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)
    log("# %s in %.1f s" % ("FAILED" if failures else "passed", time.monotonic() - start))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
