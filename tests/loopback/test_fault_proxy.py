#!/usr/bin/env python3
"""tests/loopback/test_fault_proxy.py: the fault proxy of the loopback suites
does what its commands say: pass, drop (bytes lost, connection kept), delay,
cut (connections closed, new ones refused), heal, stats.

Usage: test_fault_proxy.py PATH_TO_FAULT_PROXY
Method: an echo server on a free port behind the proxy; a client talks through
it while a control connection switches modes. Every process is killed at the end."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def echo_server(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def echo(conn):
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        conn.sendall(data)


def control(path, line):
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.sendall((line + "\n").encode())
    reply = c.makefile().readline().strip()
    c.close()
    return reply


def roundtrip(sock, payload, timeout):
    """Send payload and read the echo: the bytes read, or None if the
    connection was closed or reset (a refused or cut connection may show as
    either, depending on timing)."""
    sock.settimeout(timeout)
    got = b""
    try:
        sock.sendall(payload)
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            got += chunk
    except socket.timeout:
        return got
    except (ConnectionResetError, BrokenPipeError):
        return None
    return got


def main():
    proxy_exe = sys.argv[1]
    failures = []

    def check(name, ok):
        print(("ok   " if ok else "FAIL ") + name)
        if not ok:
            failures.append(name)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    target_port = server.getsockname()[1]
    threading.Thread(target=echo_server, args=(server,), daemon=True).start()
    listen_port = free_port()
    tmp = tempfile.mkdtemp(prefix="tandem-proxy-")
    ctl = os.path.join(tmp, "control")
    proxy = subprocess.Popen([proxy_exe, str(listen_port), str(target_port), ctl])
    try:
        for _ in range(100):
            if os.path.exists(ctl):
                break
            time.sleep(0.02)
        client = socket.create_connection(("127.0.0.1", listen_port))
        check("pass echoes", roundtrip(client, b"hello", 2) == b"hello")
        check("drop acknowledged", control(ctl, "drop") == "ok")
        check("drop loses bytes", roundtrip(client, b"lost", 0.3) == b"")
        check("heal acknowledged", control(ctl, "heal") == "ok")
        check("connection kept through drop", roundtrip(client, b"again", 2) == b"again")
        control(ctl, "delay 300")
        start = time.monotonic()
        got = roundtrip(client, b"slow", 3)
        elapsed = time.monotonic() - start
        check("delay holds bytes", got == b"slow" and elapsed >= 0.5)
        control(ctl, "pass")
        check("cut acknowledged", control(ctl, "cut") == "ok")
        check("cut closes connections", roundtrip(client, b"x", 2) is None)
        refused = socket.create_connection(("127.0.0.1", listen_port))
        check("cut refuses new connections", roundtrip(refused, b"y", 2) is None)
        control(ctl, "heal")
        fresh = socket.create_connection(("127.0.0.1", listen_port))
        check("heal accepts again", roundtrip(fresh, b"back", 2) == b"back")
        stats = control(ctl, "stats")
        check("stats counts", stats.startswith("ok connections ") and " dropped 4" in stats)
        check("unknown command refused", control(ctl, "frob").startswith("error"))
        proxy.terminate()
        check("SIGTERM exits 0", proxy.wait(timeout=5) == 0)
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()
        server.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
