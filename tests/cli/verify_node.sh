#!/usr/bin/env bash
# tests/cli/verify_node.sh: `tandem verify --node ADDR [--deep]` on a running
# node (README, docs/OPERATIONS.md "Verifying a node"; docs/PROTOCOL.md §7.7).
# Usage: verify_node.sh TANDEM TANDEMD
#
# Proves:
# - a running standalone node verified through its directory (tandemd's local
#   socket): exit 0, the report on stdout, progress and the summary on stderr;
#   the report is the one a local verify prints once tandemd is stopped;
# - a byte flipped in a sealed segment under the running tandemd: exit 1, the
#   damaged range named in tandem status's words; --deep skips the index then;
# - an index made to differ from the log (an entry added with mdb_load while
#   tandemd was stopped: its watermark still agrees, so tandemd keeps it):
#   --deep finds it, rebuilds it under the running node (exit 1, "rebuilt"),
#   queries answer as before, and a second --deep finds it equal (exit 0);
# - a replicated 2-node cluster through HOST:PORT with a client certificate:
#   both nodes intact (exit 0), --deep equal; a byte flipped in the backup's
#   sealed segment ([verification] repair = off) found through HOST:PORT;
# - SIGTERM to tandemd during a --deep verify: tandemd exits 0 without waiting
#   for the pass, the verify exits 2 saying the node is shutting down, and no
#   scratch index is left;
# - bad command lines and an unreachable node: one line, exit 2;
# - a node that answers wrongly (a fake tandemd in python on DIR/tandemd.sock:
#   a line that is not JSON, no report, a report missing fields, another frame
#   type): one line naming the cause, exit 2.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
stop() { # stop NAME
    local p
    eval "p=\$pid_$2"
    kill -TERM "$p"; wait "$p"; check "tandemd $1 exits 0 on SIGTERM" 0 $?
}

# --- A running standalone node, through its directory. ---------------------------
S=$work/s
"$T" init "$S" --cluster c0 --node s1 >/dev/null
printf '\n[log]\nsegment_size = 65536\n' >> "$S/tandem.conf"
start "$S" s
# Eight appends of 400 records (about 22 KB each): segments of 64 KiB seal.
append_rounds() { # append_rounds DIR SEED
    local rc=0
    for i in $(seq 8); do
        "$T" generate --seed $(( $2 + i )) --customers 3 --count 400 | "$T" append --node "$1" >/dev/null || rc=1
    done
    return $rc
}
append_rounds "$S" 3; check "append through tandemd rc" 0 $?
SEALED=$(ls "$S/log" | grep -c '\.seg$')
[[ $SEALED -ge 2 ]]; check "several segments (some sealed)" 0 $?
"$T" verify --node "$S" > "$work/v" 2> "$work/verr"
check "running: exit 0" 0 $?
check "running: log intact" 1 "$(grep -c "^verify      $S: log intact$" "$work/v")"
check "running: chain hash line" 1 "$(grep -cE '^chain hash  [0-9a-f]{32} at lsn [0-9]+$' "$work/v")"
check "running: index not checked" 1 "$(grep -c '^index       not checked (use --deep)$' "$work/v")"
check "running: progress line" 1 "$(grep -cE "^tandem: verify $S: reading [0-9]+ bytes of segments$" "$work/verr")"
check "running: summary line" 1 "$(grep -cE "^tandem: verify $S: $SEALED segments, .* s: intact$" "$work/verr")"
check "running: stderr is progress and summary" 0 "$(grep -vcE "^tandem: verify $S: (reading|[0-9]+ of|$SEALED segments)" "$work/verr")"
cp "$work/v" "$work/v.running"
"$T" verify --node "$S" --deep > "$work/v" 2> "$work/verr"
check "running --deep: exit 0" 0 $?
check "running --deep: index equal" 1 "$(grep -c '^index       equal to a rebuild from the log (lsn ' "$work/v")"
check "running --deep: progress names the index" 1 "$(grep -c "^tandem: verify $S: comparing the index with a rebuild from the log$" "$work/verr")"

# A byte flipped in a sealed segment under the running tandemd.
SEG=00000000000000000001.seg # The first segment: sealed.
flip "$S/log/$SEG" 20000
"$T" verify --node "$S" > "$work/v" 2> "$work/verr"
check "flipped: exit 1" 1 $?
check "flipped: log DAMAGED" 1 "$(grep -c "^verify      $S: log DAMAGED$" "$work/v")"
check "flipped: the range named" 1 "$(grep -cE "^damaged     log/$SEG offset [0-9]+: lsn [0-9]+\.\.[0-9]+ \(sealed segment\)$" "$work/v")"
check "flipped: summary" 1 "$(grep -c ': DAMAGED: 1 range$' "$work/verr")"
"$T" verify --node "$S" --deep > "$work/v" 2>/dev/null
check "flipped --deep: exit 1" 1 $?
check "flipped --deep: index skipped" 1 "$(grep -c '^index       not checked: the log is damaged (repair it first)$' "$work/v")"
flip "$S/log/$SEG" 20000
"$T" verify --node "$S" >/dev/null 2>&1; check "flipped back: exit 0" 0 $?

# The same report as a local verify once tandemd is stopped.
stop s s
"$T" verify --node "$S" > "$work/v.local" 2> "$work/verr"
check "stopped: local verify exit 0" 0 $?
check "stopped: no progress lines (local)" 0 "$(grep -c 'reading' "$work/verr")"
cmp -s "$work/v.running" "$work/v.local"; check "running and local reports are the same" 0 $?

# --- An index that differs from the log, found and rebuilt under tandemd. ---------
MID=$("$T" generate --seed 4 --customers 3 --count 400 | sed -n 100p | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
"$T" get --node "$S" --message-id "$MID" > "$work/get.before"; check "get before rc" 0 $?
# An extra entry in the sender database; the watermark still matches the log.
(mdb_dump -s sender "$S/index" | sed '/^HEADER=END$/q'
 printf ' 00000002\n 00000000000000000000000000000001\nDATA=END\n') > "$work/extra.dump"
mdb_load -s sender -f "$work/extra.dump" "$S/index" 2>/dev/null; check "mdb_load rc" 0 $?
start "$S" s
"$T" verify --node "$S" --deep > "$work/v" 2> "$work/verr"
check "index differs: exit 1" 1 $?
check "index differs: rebuilt" 1 "$(grep -c '^index       differed from a rebuild from the log: database sender differs from a rebuild at entry [0-9]*; rebuilt$' "$work/v")"
check "index differs: summary" 1 "$(grep -c ': intact, index differed and was rebuilt$' "$work/verr")"
"$T" get --node "$S" --message-id "$MID" > "$work/get.after"; check "get after rc" 0 $?
cmp -s "$work/get.before" "$work/get.after"; check "queries answer as before" 0 $?
"$T" verify --node "$S" --deep > "$work/v" 2>/dev/null
check "after the rebuild: exit 0" 0 $?
check "after the rebuild: equal" 1 "$(grep -c '^index       equal to a rebuild from the log' "$work/v")"
check "no scratch index left" "" "$(ls -d "$S"/index.verify* 2>/dev/null)"

# --- SIGTERM while a --deep verify runs: tandemd does not wait for its pass. ------
# 400,000 records make the rebuild beside the live index take a second or more;
# the signal goes once the verify's progress says the index phase began.
L=$work/long
"$T" init "$L" --cluster c0 --node l1 >/dev/null
start "$L" long
"$T" generate --seed 5 --customers 50 --count 400000 | "$T" append --node "$L" >/dev/null
check "long: append rc" 0 $?
"$T" verify --node "$L" --deep > "$work/lv" 2> "$work/lverr" &
vpid=$!
for _ in $(seq 600); do
    grep -q "comparing the index with a rebuild" "$work/lverr" && break
    sleep 0.02
done
running=0; grep -q ": intact" "$work/lverr" || running=1 # No summary yet: still under way.
kill -TERM "$pid_long"; wait "$pid_long"; check "long: tandemd exits 0 on SIGTERM during a verify" 0 $?
wait "$vpid"; vrc=$?
if [[ $running -eq 0 ]]; then
    echo "SKIP long: the verify ended before the signal (a faster machine than this test assumes)"
else
    check "long: verify exit" 2 $vrc
    check "long: verify says why" 1 "$(grep -c "^tandem: verify $L: verify stopped: the node is shutting down: " "$work/lverr")"
    check "long: no scratch index left" "" "$(ls -d "$L"/index.verify* 2>/dev/null)"
fi
check "long: tandemd traced the stop" 1 "$(grep -c 'stopped: .* closed' "$work/long.err")"

# --- Bad command lines and an unreachable node. ----------------------------------
bad() { # bad DESCRIPTION ERROR-PREFIX ARGS...
    local what=$1 prefix=$2
    shift 2
    "$T" "$@" > "$work/out" 2> "$work/err"
    local rc=$?
    check "$what: exit" 2 "$rc"
    check "$what: one line" "1 1" "$(wc -l < "$work/err") $(grep -c "^$prefix" "$work/err")"
    check "$what: no stdout" "" "$(cat "$work/out")"
}
bad "verify without --node" "tandem: verify: --node ADDR is required" verify
bad "verify unknown option" "tandem: verify: unknown option '--bogus'" verify --node "$S" --bogus
bad "verify extra argument" "tandem: verify: unexpected argument" verify --node "$S" extra
bad "verify HOST:PORT without cert" "tandem: verify: --node 127.0.0.1:9 needs a client certificate" verify --node 127.0.0.1:9
bad "verify not a node directory" "tandem: verify $work: " verify --node "$work"

# --- A node that answers VERIFY wrongly (a fake tandemd on DIR/tandemd.sock). ------
# Each answer the CLI cannot use is one line naming the cause, exit 2.
F=$work/fake
mkdir "$F"
fake() { # fake SCENARIO: answer one VERIFY on $F/tandemd.sock, then exit
    python3 - "$F/tandemd.sock" "$1" <<'PY' &
import json, os, socket, struct, sys
path, scenario = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".tmp"); listener.listen(1); os.rename(path + ".tmp", path)
conn, _ = listener.accept()
def read(n):
    b = b""
    while len(b) < n:
        c = conn.recv(n - len(b)); assert c; b += c
    return b
size = struct.unpack("<I", read(4))[0]
body = read(size)
assert struct.unpack_from("<H", body, 0)[0] == 46, "not VERIFY"
request_id = struct.unpack_from("<Q", body, 12)[0]
def frame(type_, text, more, status=0):
    payload = struct.pack("<QiBI", request_id, status, 1 if more else 0, len(text)) + text
    return struct.pack("<IHHQ", 12 + len(payload), type_, 0, 0) + payload
out = {
    "badline": frame(47, b"not json\n", True) + frame(47, b"", False),
    "noreport": frame(47, b'{"progress": {"phase": "log", "bytes_done": 0, "bytes_total": 9, "segment_lsn": 0}}\n', True) + frame(47, b"", False),
    "badreport": frame(47, b'{"report": {"seconds": 1}}\n', True) + frame(47, b"", False),
    "wrongtype": frame(37, b"{}", False),
}[scenario]
conn.sendall(out)
conn.close(); os.unlink(path)
PY
    fake_pid=$!
    pids+=("$fake_pid")
    for _ in $(seq 200); do [[ -S "$F/tandemd.sock" ]] && return 0; sleep 0.05; done
    echo "FAIL the fake node did not start"; exit 1
}
fake badline
bad "fake: a line that does not parse" "tandem: verify $F: the node answered a verify line that does not parse: not json" verify --node "$F"
fake noreport
"$T" verify --node "$F" > "$work/out" 2> "$work/err"; check "fake: no report: exit" 2 $?
check "fake: no report: the progress line, then the error" "tandem: verify $F: reading 9 bytes of segments
tandem: verify $F: the node's answer ended without a report" "$(cat "$work/err")"
check "fake: no report: no stdout" "" "$(cat "$work/out")"
fake badreport
bad "fake: a report that does not parse" "tandem: verify $F: the node answered a verify report that does not parse" verify --node "$F"
fake wrongtype
bad "fake: another frame type" "tandem: verify $F: the node answered STATUS_RESULT" verify --node "$F"
wait "$fake_pid"

# --- A replicated 2-node cluster through HOST:PORT. ------------------------------
ports=$(free_ports 3)
read -r P1 P2 P3 <<< "$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
"$T" ca "$CA" --client ops --out "$work/ops" >/dev/null
N1=$work/n1
N2=$work/n2
init_pair n1 "$P1" n2 "$P2"
for n in "$N1" "$N2"; do
    # repair = off: the flipped byte must stay for verify to find it.
    printf '\n[log]\nsegment_size = 65536\n[verification]\nrepair = off\n' >> "$n/tandem.conf"
done
start "$N1" n1
start "$N2" n2
append_rounds "$N1" 20; check "cluster: append rc" 0 $?
# The backup holds every acknowledged write (min_copies = 2).
"$T" verify --node 127.0.0.1:$P1 --cert "$work/ops" > "$work/v" 2> "$work/verr"
check "HOST:PORT primary: exit 0" 0 $?
check "HOST:PORT primary: log intact" 1 "$(grep -c "^verify      127.0.0.1:$P1: log intact$" "$work/v")"
check "HOST:PORT primary: progress line" 1 "$(grep -cE "^tandem: verify 127.0.0.1:$P1: reading [0-9]+ bytes of segments$" "$work/verr")"
TANDEM_CERT=$work/ops "$T" verify --node 127.0.0.1:$P2 --deep > "$work/v" 2>/dev/null
check "HOST:PORT backup --deep (TANDEM_CERT): exit 0" 0 $?
check "HOST:PORT backup --deep: index equal" 1 "$(grep -c '^index       equal to a rebuild from the log' "$work/v")"
SEG2=00000000000000000001.seg
[[ $(ls "$N2/log" | grep -c '\.seg$') -ge 2 ]]; check "cluster: the backup has a sealed segment" 0 $?
flip "$N2/log/$SEG2" 20000
"$T" verify --node 127.0.0.1:$P2 --cert "$work/ops" > "$work/v" 2> "$work/verr"
check "HOST:PORT flipped: exit 1" 1 $?
check "HOST:PORT flipped: the range named" 1 "$(grep -cE "^damaged     log/$SEG2 offset [0-9]+: lsn [0-9]+\.\.[0-9]+ \(sealed segment\)$" "$work/v")"
flip "$N2/log/$SEG2" 20000
"$T" verify --node "$N2" > /dev/null 2>&1; check "backup DIR flipped back: exit 0" 0 $?
bad "verify unreachable HOST:PORT" "tandem: verify 127.0.0.1:$P3: " verify --node 127.0.0.1:$P3 --cert "$work/ops"
stop n1 n1
stop n2 n2
exit $fail
