#!/usr/bin/env bash
# tests/loopback/test_tandemd.sh: a standalone tandemd serves its local socket
# (DESIGN "Public contracts": tandemd DIR; ADDR = a node directory goes through
# its socket when a tandemd runs there). Usage: test_tandemd.sh TANDEM TANDEMD
#
# Proves, against real processes in a fresh random directory:
# - tandemd creates DIR/tandemd.sock with mode 0600 and a second tandemd on the
#   same DIR fails (exit 1, the lock named);
# - appends through the socket (the directory is locked by tandemd, so the CLI
#   cannot have opened it) stream LSNs in input order while another CLI
#   queries; a bad line stops with its line number, the lines before it stored;
# - get/query/customer/status through the socket print what a direct open
#   prints after tandemd stopped;
# - a malformed frame closes only that connection, is traced, and the daemon
#   goes on serving;
# - SIGTERM during a streaming append: tandemd exits 0 within 5 s and every LSN
#   the CLI printed is in the log afterwards;
# - tandemd sets its core size limit to 0, and SIGABRT leaves no core file;
# - started as root on a directory that belongs to a service user, tandemd runs
#   as that user with no capabilities, and what it writes belongs to it; on a
#   root-owned directory it says that it runs as root.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
. "$(dirname "$0")/../cli/lib.sh"
# Start tandemd on $N, logging to $work/$1.err; sets daemon to its pid.
start_daemon() {
    "$D" "$N" 2> "$work/$1.err" &
    daemon=$!
    pids+=("$daemon")
    for _ in $(seq 100); do
        [[ -S "$N/tandemd.sock" ]] && return 0
        sleep 0.05
    done
    echo "FAIL tandemd did not create its socket"; cat "$work/$1.err"; exit 1
}
# The nice value of $daemon's index thread.
index_nice() {
    local task
    for task in /proc/"$daemon"/task/*; do
        [[ $(cat "$task/comm") == tdm-index ]] && awk '{print $19}' "$task/stat"
    done
}
# Stop tandemd with SIGTERM; sets stop_rc and stop_ms.
stop_daemon() {
    local t0 t1
    t0=$(date +%s%N)
    kill -TERM "$daemon"
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
    wait "$daemon"; stop_rc=$?
    t1=$(date +%s%N)
    stop_ms=$(( (t1 - t0) / 1000000 ))
}

N=$work/node
"$T" init "$N" --cluster c1 --node n1 >/dev/null; check "init rc" 0 $?
"$T" generate --seed 3 --customers 20 --count 4000 > "$work/r.jsonl"
start_daemon d1
check "socket mode" 600 "$(stat -c %a "$N/tandemd.sock")"
"$D" "$N" 2> "$work/second.err"; check "second tandemd rc" 1 $?
check "second tandemd names the lock" 1 "$(grep -c -i 'lock' "$work/second.err")"

# Append through the socket while another CLI queries.
# The input arrives in 20 pieces over about a second (a pipe, not a file).
feed() {
    for i in $(seq 0 19); do
        sed -n "$((i * 201 + 1)),$((i * 201 + 201))p" "$work/r.jsonl"
        sleep 0.05
    done
}
feed | "$T" append --node "$N" > "$work/lsn" 2> "$work/append.err" &
append_pid=$!
pids+=("$append_pid")
queries=0
while kill -0 "$append_pid" 2>/dev/null; do
    "$T" status --node "$N" --json > /dev/null; rc=$?
    [[ $rc -eq 0 ]] || { echo "FAIL status during append rc $rc"; fail=1; }
    "$T" query --node "$N" --customer 2 > "$work/during"; rc=$?
    # Nothing found (1) is fine early on; anything printed must be JSON Lines.
    [[ $rc -le 1 ]] || { echo "FAIL query during append rc $rc"; fail=1; }
    python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$work/during" ||
        { echo "FAIL query during append printed no JSON Lines"; fail=1; }
    queries=$((queries + 1))
done
wait "$append_pid"; check "append through tandemd rc" 0 $?
check "append lsn lines" 4020 "$(wc -l < "$work/lsn")"
check "append lsns in order" "$(seq 1 4020 | sed 's/.*/{"lsn": &}/' | md5sum)" "$(md5sum < "$work/lsn")"
echo "     ($queries status and query pairs ran during the append)"

# First bad line through the socket: line 3 lacks fields.
{ sed -n 1,2p "$work/r.jsonl"; echo '{"type":"message","customer_id":1}'; sed -n 3p "$work/r.jsonl"; } > "$work/bad.jsonl"
"$T" append --node "$N" < "$work/bad.jsonl" > "$work/lsn2" 2> "$work/err2"; check "bad line rc" 1 $?
check "bad line lsns" 2 "$(wc -l < "$work/lsn2")"
check "bad line error" 1 "$(grep -c '^tandem: line 3: ' "$work/err2")"

# Queries through the socket.
mid=$(sed -n 100p "$work/r.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
"$T" get --node "$N" --message-id "$mid" > "$work/get.d"; check "get rc" 0 $?
"$T" query --node "$N" --customer 4 > "$work/query.d"; check "query rc" 0 $?
"$T" query --node "$N" --customer 4 --since 2026-11-28T00:00:30Z --until 2026-11-28T00:01:00Z > "$work/window.d"
"$T" customer --node "$N" --id 4 > "$work/customer.d"; check "customer rc" 0 $?
"$T" customer --node "$N" --id 4000000 > "$work/none.d"; check "customer none rc" 1 $?
check "customer none output" 0 "$(wc -c < "$work/none.d")"
"$T" status --node "$N" --json > "$work/status.d"; check "status rc" 0 $?
# Root may raise a thread's priority back (CAP_SYS_NICE): the index thread
# runs in the background between the queries above, each of which raised it
# (engine/commit.c "The index thread's priority"); nothing traced.
sleep 0.2
check "the index thread is back in the background after the queries" 19 "$(index_nice)"
check "no index thread priority trace" 0 "$(grep -c 'index thread: ' "$work/d1.err")"

# A malformed frame: a size field of 5 (below the 12-byte header) and garbage.
python3 - "$N/tandemd.sock" <<'PY'; check "malformed frame sent" 0 $?
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"\x05\x00\x00\x00garbage-garbage")
s.settimeout(5)
sys.exit(0 if s.recv(1) == b"" else 1)  # tandemd closes the connection
PY
# Clients that vanish before their answer (the write must fail with EPIPE, not
# kill tandemd with SIGPIPE), and one that half-closes and still gets its answer.
python3 - "$N/tandemd.sock" <<'PY'; check "vanishing and half-closed clients" 0 $?
import socket, struct, sys
def status_frame(request_id):
    payload = struct.pack("<Q", request_id)
    return struct.pack("<IHHQ", 12 + len(payload), 36, 0, 0) + payload
for i in range(50):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(status_frame(i) * 8)
    s.close()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(status_frame(7))
s.shutdown(socket.SHUT_WR)
s.settimeout(5)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
size, kind = struct.unpack_from("<IH", data)
sys.exit(0 if kind == 37 and size + 4 == len(data) else 1)
PY
check "daemon alive after malformed frame" 0 "$(kill -0 "$daemon" 2>/dev/null; echo $?)"
check "malformed frame traced" 1 "$(grep -c 'closing connection' "$work/d1.err")"
"$T" customer --node "$N" --id 4 > /dev/null; check "served after malformed frame" 0 $?

# SIGTERM on an idle daemon.
stop_daemon
check "SIGTERM exit status" 0 "$stop_rc"
check "SIGTERM within 5 s" 1 "$(( stop_ms < 5000 ))"
check "stopped traced" 1 "$(grep -c '^tandemd: stopped' "$work/d1.err")"
check "socket removed" 1 "$([[ -e "$N/tandemd.sock" ]]; echo $?)"

# After the stop: a direct open prints what tandemd served.
"$T" get --node "$N" --message-id "$mid" > "$work/get.o"
"$T" query --node "$N" --customer 4 > "$work/query.o"
"$T" query --node "$N" --customer 4 --since 2026-11-28T00:00:30Z --until 2026-11-28T00:01:00Z > "$work/window.o"
"$T" customer --node "$N" --id 4 > "$work/customer.o"
check "get equal" "$(md5sum < "$work/get.d")" "$(md5sum < "$work/get.o")"
check "query equal" "$(md5sum < "$work/query.d")" "$(md5sum < "$work/query.o")"
check "query window equal" "$(md5sum < "$work/window.d")" "$(md5sum < "$work/window.o")"
check "customer equal" "$(md5sum < "$work/customer.d")" "$(md5sum < "$work/customer.o")"
"$T" status --node "$N" --json > "$work/status.o"
check "status equal" "$(md5sum < "$work/status.d")" "$(md5sum < "$work/status.o")"

# SIGTERM while a streaming append through a restarted tandemd waits for input.
start_daemon d2
{ sed -n 1,500p "$work/r.jsonl"; sleep 1.5; sed -n 501,1000p "$work/r.jsonl"; } |
    "$T" append --node "$N" > "$work/lsn3" 2> "$work/err3" &
stream_pid=$!
pids+=("$stream_pid")
for _ in $(seq 100); do [[ $(wc -l < "$work/lsn3") -ge 500 ]] && break; sleep 0.02; done
stop_daemon
check "SIGTERM mid-stream exit status" 0 "$stop_rc"
check "SIGTERM mid-stream within 5 s" 1 "$(( stop_ms < 5000 ))"
wait "$stream_pid"; stream_rc=$?
printed=$(wc -l < "$work/lsn3")
check "streaming append printed its first 500 LSNs" 1 "$(( printed >= 500 ))"
echo "     (streaming append exited $stream_rc after printing $printed LSNs: $(head -c 200 "$work/err3"))"
last=$("$T" status --node "$N" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["last_lsn"])')
max_printed=$(sed 's/[^0-9]//g' "$work/lsn3" | sort -n | tail -1)
check "every printed LSN is in the log" 1 "$(( max_printed <= last ))"
check "printed LSNs are consecutive" "$(seq 4023 $((4022 + printed)) | md5sum)" \
    "$(sed 's/[^0-9]//g' "$work/lsn3" | md5sum)"
check "direct read of the last printed LSN's customer" 0 \
    "$("$T" customer --node "$N" --id 4 > /dev/null; echo $?)"

# SIGTERM while appends are in flight: tandemd finishes what it took, exits 0,
# and every LSN the CLI printed is in the log.
start_daemon d3
base=$("$T" status --node "$N" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["last_lsn"])')
"$T" generate --seed 5 --customers 50 --count 40000 > "$work/big.jsonl"
"$T" append --node "$N" < "$work/big.jsonl" > "$work/lsn4" 2> "$work/err4" &
big_pid=$!
pids+=("$big_pid")
for _ in $(seq 500); do [[ -s "$work/lsn4" ]] && break; sleep 0.01; done
stop_daemon
check "SIGTERM with appends in flight exit status" 0 "$stop_rc"
check "SIGTERM with appends in flight within 5 s" 1 "$(( stop_ms < 5000 ))"
wait "$big_pid"; big_rc=$?
printed=$(wc -l < "$work/lsn4")
echo "     (big append exited $big_rc after printing $printed of 40050 LSNs)"
last=$("$T" status --node "$N" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["last_lsn"])')
check "every printed LSN of the big append is in the log" 1 "$(( base + printed <= last ))"
check "big append LSNs are consecutive" "$(seq $((base + 1)) $((base + printed)) | md5sum)" \
    "$(sed 's/[^0-9]//g' "$work/lsn4" | md5sum)"

# No core dumps (RELIABILITY S13: a core would hold customer records and the
# node's TLS key): started with the core size limit raised, tandemd lowers it
# to 0, and SIGABRT leaves no core. A control process beside it, killed the
# same way, shows that this machine would write one (else: skipped).
mkdir -p "$work/cores"
(cd "$work/cores" && ulimit -c unlimited 2>/dev/null && exec sleep 30) &
control=$!
pids+=("$control")
sleep 0.2
kill -ABRT "$control"; wait "$control" 2>/dev/null
control_core=$(ls "$work/cores" | grep -c '^core')
rm -f "$work/cores"/core*
D_ABS=$(realpath "$D")
(cd "$work/cores" && ulimit -c unlimited 2>/dev/null; exec "$D_ABS" "$N") 2> "$work/abrt.err" &
daemon=$!
pids+=("$daemon")
for _ in $(seq 100); do [[ -S "$N/tandemd.sock" ]] && break; sleep 0.05; done
[[ -r /proc/$daemon/limits ]] || { echo "FAIL tandemd did not start:"; cat "$work/abrt.err"; fail=1; }
check "tandemd: core size limit 0" "0 0" \
    "$(awk '/^Max core file size/ {print $5, $6}' "/proc/$daemon/limits")"
kill -ABRT "$daemon"; wait "$daemon" 2>/dev/null
if [[ $control_core -ge 1 ]]; then
    check "tandemd killed by SIGABRT leaves no core" 0 "$(ls "$work/cores" | grep -c '^core')"
else
    echo "skip tandemd killed by SIGABRT leaves no core: this machine writes no core files here"
fi

# Not root (RELIABILITY S13): on a node directory that belongs to a service
# user (here nobody), tandemd started as root runs as that user, with no
# capabilities left, and what it writes belongs to that user. On a root-owned
# directory (every tandemd above) it says that it runs as root.
check "tandemd on a root-owned directory says it runs as root" 1 \
    "$(grep -c 'running as root, because .* belongs to root' "$work/d1.err")"
if [[ $(id -u) -eq 0 ]] && id nobody >/dev/null 2>&1; then
    chmod 0711 "$work" # nobody must reach its directory inside.
    S=$work/svc
    "$T" init "$S" --cluster c1 --node n1 >/dev/null; check "init of the service user's node" 0 $?
    chown -R nobody: "$S"
    root_n=$N
    N=$S
    start_daemon svc
    N=$root_n
    check "tandemd runs as the owner of its directory (real, effective, saved uid)" \
        "$(id -u nobody) $(id -u nobody) $(id -u nobody)" \
        "$(awk '/^Uid:/ {print $2, $3, $4}' "/proc/$daemon/status")"
    check "tandemd has no capabilities" "0000000000000000 0000000000000000" \
        "$(awk '/^CapEff:/ {e=$2} /^CapPrm:/ {p=$2} END {print e, p}' "/proc/$daemon/status")"
    check "tandemd says whom it runs as" 1 "$(grep -c 'running as nobody (uid' "$work/svc.err")"
    head -n 5 "$work/r.jsonl" | "$T" append --node "$S" > "$work/svc.lsn"
    check "append through the service user's tandemd" "0 5" "$? $(wc -l < "$work/svc.lsn")"
    check "its segment belongs to nobody" nobody "$(stat -c %U "$S"/log/*.seg | sort -u)"
    # The index thread runs in the background (nice 19) only if it may come
    # back to nice 0 while a query waits (engine/commit.c "The index thread's
    # priority"): tandemd raises RLIMIT_NICE to 20 before it leaves root,
    # which root may do here only with CAP_SYS_RESOURCE or a hard limit of 20.
    root_hard=$(awk '/^Max nice priority/ {print $5}' /proc/self/limits)
    root_caps=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    "$T" query --node "$S" --customer 1 > /dev/null
    check "a query through the service user's tandemd (none found)" 1 $?
    if [[ $root_hard == unlimited || $root_hard -ge 20 ]] || (( 0x$root_caps & (1 << 24) )); then
        check "tandemd raised RLIMIT_NICE for the service user" "20" \
            "$(awk '/^Max nice priority/ {print $4}' "/proc/$daemon/limits")"
        check "its index thread runs in the background" 19 "$(index_nice)"
        check "it came back for the query (nothing traced)" 0 \
            "$(grep -c 'index thread: ' "$work/svc.err")"
    else
        check "RLIMIT_NICE stays 0 for the service user" "0" \
            "$(awk '/^Max nice priority/ {print $4}' "/proc/$daemon/limits")"
        check "so its index thread stays at nice 0" 0 "$(index_nice)"
        check "and says so once" 1 "$(grep -c 'index thread: stays at nice 0, not in the background' "$work/svc.err")"
    fi
    stop_daemon
    check "the service user's tandemd stops on SIGTERM" 0 "$stop_rc"
    # Only the directory given away, not its files: refused, the file named.
    "$T" init "$work/svc2" --cluster c1 --node n1 >/dev/null
    chown nobody: "$work/svc2"
    "$D" "$work/svc2" 2> "$work/svc2.err"
    check "tandemd on files it cannot open exits 1" 1 $?
    check "and says which file and why" 1 "$(grep -c 'tandem.conf: Permission denied (the node directory.s files must belong to the user tandemd runs as: chown -R)' "$work/svc2.err")"
else
    echo "skip tandemd as a service user: not root, or no user nobody"
fi

exit $fail
