"""tests/loopback/cluster_lib.py: what the loopback python suites share
(test_cluster.py, test_switchover.py, test_security.py; bench/bench_switchover.py
through test_switchover.py). Each script puts its own directory on sys.path and
imports this module."""
import json
import os
import socket
import subprocess
import time


def log(msg):
    print(msg, flush=True)


def free_ports(count):
    """COUNT TCP ports of 127.0.0.1 free at the time of the call."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run(args, timeout=30, **kw):
    """Runs ARGS to completion; stdout and stderr captured as text."""
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          text=True, **kw)


def wait_tandemd(proc, node_dir, name, tail=None):
    """Waits (15 s at most) until the tandemd proc answers on
    node_dir/tandemd.sock. Raises RuntimeError naming name if it exits first
    (with what tail() returns, if given) or does not answer."""
    sock = os.path.join(node_dir, "tandemd.sock")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s: tandemd exited %s at start%s" %
                               (name, proc.returncode, ": " + tail() if tail else ""))
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("%s: tandemd does not answer on its socket" % name)


def wait_or_kill(proc, timeout):
    """proc's exit status within timeout seconds; else SIGKILL and "hung"."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "hung"


def tail_lines(path, lines):
    """The last lines of the file at path, as text ("" if unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(data[-lines:])
    except OSError:
        return ""


def set_write_deadline(node_dir, ms, sync=False):
    """Replaces the default write_deadline_ms (10000) of node_dir/tandem.conf
    with ms; with sync, fsyncs the file."""
    conf = os.path.join(node_dir, "tandem.conf")
    with open(conf) as f:
        text = f.read()
    assert "write_deadline_ms = 10000" in text, text
    with open(conf, "w") as f:
        f.write(text.replace("write_deadline_ms = 10000", "write_deadline_ms = %d" % ms))
        if sync:
            f.flush()
            os.fsync(f.fileno())


def split_generated(text):
    """`tandem generate` output: (customer lines, message records parsed)."""
    customers = []
    templates = []
    for line in text.splitlines():
        rec = json.loads(line)
        if rec["type"] == "customer":
            customers.append(line)
        else:
            templates.append(rec)
    return customers, templates
