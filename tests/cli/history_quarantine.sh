#!/usr/bin/env bash
# tests/cli/history_quarantine.sh: `tandem history` and `tandem quarantine`
# (README, docs/OPERATIONS.md "History", "Quarantine"; docs/PROTOCOL.md §7.6).
# Usage: history_quarantine.sh TANDEM TANDEMD
#
# Proves:
# - a standalone node has no replication history (exit 1, one line), and an
#   empty quarantine lists as such (exit 0);
# - a real torn tail (a whole batch that does not follow the chain, then 50
#   bytes of garbage, cut into quarantine by recovery) is listed with its
#   reason, LSN range, epoch, counts, bytes, RFC 3339 time and the unreadable
#   range; --export writes its records as JSON Lines with "lsn", equal to what
#   `tandem get` prints for the same LSNs, and exits 1 with one line saying
#   one unreadable range was left out;
# - damaged bytes in quarantine (a flipped body byte, garbage, a whole
#   segment moved there) are reported, never exported, never fatal;
# - the history written by two real tandemd nodes (a restart of the primary
#   opens epoch 2) reads the same from DIR and from HOST:PORT, byte for byte,
#   and gives the quarantined batches to the epoch that wrote them;
# - quarantine listing and export read the same from DIR and HOST:PORT;
# - every field of a hand-written history (command with its pause, forced
#   failover with its LSNs at risk) in text and JSON; a new cluster's history
#   without DIR/epochs; a damaged DIR/epochs is one line naming the file and
#   line (directly and through a running node);
# - bad command lines are one line and exit 2;
# - the on-call procedure end to end: a forced failover, the old primary back
#   as a backup with its divergent tail cut into quarantine, listed, given to
#   its epoch by history, exported for reconciliation.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
# jq-like: jget FILE EXPRESSION (python over the parsed document d).
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'

# --- A standalone node: no history; an empty quarantine. -------------------------
S=$work/s1
"$T" init "$S" --cluster c0 --node s1 >/dev/null
"$T" history --node "$S" > "$work/out" 2> "$work/err"
check "standalone history: exit 1" 1 $?
check "standalone history: one line" "tandem: history: $S is a standalone node: it has no replication history" "$(cat "$work/err")"
check "standalone history: no stdout" "" "$(cat "$work/out")"
"$T" quarantine --node "$S" > "$work/out"
check "empty quarantine: exit 0" 0 $?
check "empty quarantine: text" "quarantine is empty" "$(cat "$work/out")"
"$T" quarantine --node "$S" --json > "$work/q.json"
check "empty quarantine: json" "0 0 []" "$(jget "$work/q.json" 'd["file_count"], d["bytes"], d["files"]')"

# --- A real torn tail. --------------------------------------------------------------
"$T" generate --seed 7 --customers 2 --count 8 > "$work/r.jsonl"
head -5 "$work/r.jsonl" | "$T" append --node "$S" >/dev/null
tail -5 "$work/r.jsonl" | "$T" append --node "$S" >/dev/null
SEG=$S/log/00000000000000000001.seg
# Append a copy of the last batch (its LSNs do not follow: recovery stops
# there) and 50 bytes of garbage; the progress record says LSN 10, below the
# LSN 11 expected there, and no batch header verifies after it: a torn tail.
CUT=$(python3 - "$SEG" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
off, last = 64, None
while off + 96 <= len(data) and struct.unpack_from('<I', data, off)[0] == 0x48435442:
    size = 96 + struct.unpack_from('<I', data, off + 28)[0]
    last = (off, size)
    off += size
assert off == len(data) and last is not None
with open(sys.argv[1], 'ab') as f:
    f.write(data[last[0]:last[0] + last[1]] + b'\xab' * 50)
print(off)
EOF
)
: | "$T" append --node "$S" >/dev/null # Open for writing: recovery cuts the tail.
TORN=$(ls "$S/quarantine")
check "torn tail file name" "1" "$(echo "$TORN" | grep -cE '^00000000000000000001\.seg\.[0-9]+\.torn$')"
check "segment cut back" "$CUT" "$(stat -c %s "$SEG" 2>/dev/null || echo none)"
"$T" quarantine --node "$S" > "$work/out"
check "listing: exit 0" 0 $?
check "listing: row" "1" "$(grep -cE "^$TORN +torn tail +6-10 +1 +5 +[0-9]+ B +20" "$work/out")"
check "listing: epoch line" "  written in epoch 1: LSNs 6-10, 5 records" "$(grep 'written in epoch' "$work/out")"
check "listing: unreadable line" "1" "$(grep -cE '^  unreadable at offset [0-9]+, 50 bytes: ends inside a batch header \(torn\)$' "$work/out")"
check "listing: total" "1" "$(grep -c '^total: 1 files, .* 1 batches, 5 records, 1 unreadable ranges$' "$work/out")"
"$T" quarantine --node "$S" --json > "$work/q.json"
check "json: file fields" "$TORN|torn tail|False|1|1|5|6|10|1|1" \
    "$(jget "$work/q.json" '"|".join(str(x) for x in (lambda f: (f["file"], f["reason"], f["whole_segment"], f["segment"], f["batches"], f["records"], f["lsn_first"], f["lsn_last"], f["unreadable_count"], f["epochs"][0]["epoch"]))(d["files"][0]))')"
check "json: bytes = file size" "$(stat -c %s "$S/quarantine/$TORN")" "$(jget "$work/q.json" 'd["files"][0]["bytes"]')"
check "json: offset = cut" "$CUT" "$(jget "$work/q.json" 'd["files"][0]["offset"]')"
[[ $(jget "$work/q.json" 'd["files"][0]["time"]') =~ $RFC3339 ]]; check "json: time RFC 3339" 0 $?
"$T" quarantine --node "$S" --export "$work/export.jsonl" > "$work/out" 2> "$work/err"
check "export: exit 1 (a range left out)" 1 $?
check "export: one line" "tandem: quarantine: exported 5 records; 1 unreadable ranges could not be exported (tandem quarantine --node ADDR lists them)" "$(cat "$work/err")"
check "export: nothing on stdout" "" "$(cat "$work/out")"
# The exported records are those `tandem get` prints at the same LSNs.
for id in $(python3 -c 'import json,sys; [print(json.loads(l)["message_id"]) for l in open(sys.argv[1])]' "$work/export.jsonl" | sort -u); do
    "$T" get --node "$S" --message-id "$id"
done > "$work/get.jsonl"
check "export: equals tandem get" "ok" "$(python3 - "$work/export.jsonl" "$work/get.jsonl" <<'EOF'
import json, sys
exported = [json.loads(l) for l in open(sys.argv[1])]
got = {json.loads(l)["lsn"]: l.strip() for l in open(sys.argv[2])}
lines = [l.strip() for l in open(sys.argv[1])]
ok = [e["lsn"] for e in exported] == [6, 7, 8, 9, 10] and all(got.get(e["lsn"]) == l for e, l in zip(exported, lines))
print("ok" if ok else "differ")
EOF
)"
"$T" quarantine --node "$S" --export - > "$work/export2.jsonl" 2>/dev/null
cmp -s "$work/export.jsonl" "$work/export2.jsonl"; check "export -: stdout" 0 $?

# --- Damaged bytes in quarantine. ----------------------------------------------------
S2=$work/s2
"$T" init "$S2" --cluster c0 --node s2 >/dev/null
cp "$S/quarantine/$TORN" "$S2/quarantine/$TORN"
printf '\xff' | dd of="$S2/quarantine/$TORN" bs=1 seek=120 conv=notrunc 2>/dev/null # A body byte.
cp "$SEG" "$S2/quarantine/00000000000000000001.seg.cut" # A whole segment, moved there.
head -c 300 /dev/urandom > "$S2/quarantine/notes"
"$T" quarantine --node "$S2" --json > "$work/q2.json"
check "damaged: exit 0" 0 $?
check "damaged: whole segment" "cut at a fork point|True|2|10|1|10|0" \
    "$(jget "$work/q2.json" '"|".join(str(x) for x in (lambda f: (f["reason"], f["whole_segment"], f["batches"], f["records"], f["lsn_first"], f["lsn_last"], f["unreadable_count"]))(d["files"][1]))')"
check "damaged: torn copy, body flipped" "0|2|True" \
    "$(jget "$work/q2.json" '"|".join(str(x) for x in (lambda f: (f["batches"], f["unreadable_count"], f["unreadable"][0]["cause"].startswith("batch of LSNs 6-10: ")))(d["files"][0]))')"
check "damaged: unknown file" "notes|unknown (not a name tandem writes)|0" \
    "$(jget "$work/q2.json" '"|".join(str(x) for x in (lambda f: (f["file"], f["reason"], f["batches"]))(d["files"][2]))')"
"$T" quarantine --node "$S2" > "$work/out"; check "damaged: text exit 0" 0 $?
check "damaged: text names the cause" "1" "$(grep -c '^  unreadable at offset 0, [0-9]* bytes: batch of LSNs 6-10: ' "$work/out")"
"$T" quarantine --node "$S2" --export "$work/e2.jsonl" 2> "$work/err"
check "damaged: export exit 1" 1 $?
check "damaged: only the whole segment's records" "1 2 3 4 5 6 7 8 9 10" \
    "$(python3 -c 'import json,sys; print(*[json.loads(l)["lsn"] for l in open(sys.argv[1])])' "$work/e2.jsonl")"
check "damaged: export says so" 1 "$(grep -c '^tandem: quarantine: exported 10 records; [0-9]* unreadable ranges' "$work/err")"

# A second file of the same origin (the name was taken: never overwritten) is
# read as the first; a suffix that is not a generation number is not ours.
S5=$work/s5
"$T" init "$S5" --cluster c0 --node s5 >/dev/null
cp "$SEG" "$S5/quarantine/00000000000000000001.seg.cut"
cp "$SEG" "$S5/quarantine/00000000000000000001.seg.cut.2"
cp "$SEG" "$S5/quarantine/00000000000000000001.seg.cut.x"
"$T" quarantine --node "$S5" --json > "$work/q5.json"; check "generations: exit 0" 0 $?
check "generations: both read, the odd one not ours" \
    "cut at a fork point|True|10 cut at a fork point|True|10 unknown (not a name tandem writes)|False|10" \
    "$(jget "$work/q5.json" '" ".join("|".join(str(x) for x in (f["reason"], f["whole_segment"], f["records"])) for f in d["files"])')"

# More shapes of damage, each its own file in a third node's quarantine: garbage
# before a whole batch (the walk finds the batch again), a batch cut short, a
# whole segment whose header is damaged, one too short for a header, and a
# directory where a file should be.
S3=$work/s3
"$T" init "$S3" --cluster c0 --node s3 >/dev/null
python3 - "$S/quarantine/$TORN" "$SEG" "$S3/quarantine" <<'EOF'
import os, struct, sys
torn, seg, q = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read(), sys.argv[3]
batch = torn[:96 + struct.unpack_from('<I', torn, 28)[0]]
open(os.path.join(q, '00000000000000000001.seg.100.cut'), 'wb').write(b'\x00' * 20 + batch)
open(os.path.join(q, '00000000000000000001.seg.200.torn'), 'wb').write(batch[:-10])
open(os.path.join(q, '00000000000000000001.seg.cut'), 'wb').write(b'\xee' + seg[1:])
open(os.path.join(q, '00000000000000000002.seg.torn'), 'wb').write(seg[:10])
EOF
mkdir "$S3/quarantine/00000000000000000003.seg.torn"
"$T" quarantine --node "$S3" --json > "$work/q3.json"; check "shapes: exit 0" 0 $?
BLEN=$(( $(stat -c %s "$S/quarantine/$TORN") - 50 ))
check "shapes: garbage, then a batch found again" "1|5|0+20:batch header: bad magic" \
    "$(jget "$work/q3.json" '(lambda f: "|".join([str(f["batches"]), str(f["records"])] + ["%d+%d:%s" % (u["offset"], u["bytes"], u["cause"][:len("batch header: bad magic")]) for u in f["unreadable"]]))(d["files"][0])')"
check "shapes: a batch cut short" "0|0|0+$((BLEN - 10)):batch of LSNs 6-10 ends past the end of the file (torn)" \
    "$(jget "$work/q3.json" '(lambda f: "|".join([str(f["batches"]), str(f["records"])] + ["%d+%d:%s" % (u["offset"], u["bytes"], u["cause"]) for u in f["unreadable"]]))(d["files"][1])')"
check "shapes: whole segment, damaged header: its batches still read" "2|10|0+64" \
    "$(jget "$work/q3.json" '(lambda f: "|".join([str(f["batches"]), str(f["records"])] + ["%d+%d" % (u["offset"], u["bytes"]) for u in f["unreadable"]]))(d["files"][2])')"
check "shapes: whole segment shorter than its header" "0|0|0+10:ends inside the segment header (torn)" \
    "$(jget "$work/q3.json" '(lambda f: "|".join([str(f["batches"]), str(f["records"])] + ["%d+%d:%s" % (u["offset"], u["bytes"], u["cause"]) for u in f["unreadable"]]))(d["files"][3])')"
check "shapes: a directory is listed with its error" "00000000000000000003.seg.torn|not a regular file|5" \
    "$(jget "$work/q3.json" '"|".join(str(x) for x in (d["files"][4]["file"], d["files"][4]["error"], d["unreadable"]))')"
"$T" quarantine --node "$S3" > "$work/out"
check "shapes: text names the error" "  cannot be read: not a regular file" "$(tail -2 "$work/out" | head -1)"
"$T" quarantine --node "$S3" --export - > "$work/e3.jsonl" 2> "$work/err"
check "shapes: export exit 1" 1 $?
check "shapes: export the readable batches" "6 7 8 9 10 1 2 3 4 5 6 7 8 9 10" \
    "$(python3 -c 'import json,sys; print(*[json.loads(l)["lsn"] for l in open(sys.argv[1])])' "$work/e3.jsonl")"
# A file where DIR/quarantine should be: one line, exit 1.
S4=$work/s4
"$T" init "$S4" --cluster c0 --node s4 >/dev/null
rmdir "$S4/quarantine" && touch "$S4/quarantine"
"$T" quarantine --node "$S4" > "$work/out" 2> "$work/err"
check "quarantine not a directory: exit 1" 1 $?
check "quarantine not a directory: one line" "tandem: quarantine: open $S4/quarantine: Not a directory" "$(cat "$work/err")"
# An export whose output cannot be written: one line, exit 1.
"$T" quarantine --node "$S" --export /dev/full > /dev/null 2> "$work/err"
check "export to a full disk: exit 1" 1 $?
check "export to a full disk: one line" "tandem: quarantine: export: write /dev/full: No space left on device" "$(cat "$work/err")"

# --- Bad command lines. ---------------------------------------------------------------
bad() { # bad DESCRIPTION EXIT ERROR-PREFIX ARGS...
    local what=$1 want=$2 prefix=$3
    shift 3
    "$T" "$@" > "$work/out" 2> "$work/err"
    local rc=$?
    check "$what: exit" "$want" "$rc"
    check "$what: one line" "1 1" "$(wc -l < "$work/err") $(grep -c "^$prefix" "$work/err")"
}
bad "history without --node" 2 "tandem: history: --node ADDR is required" history
bad "history unknown option" 2 "tandem: history: unknown option '--bogus'" history --node "$S" --bogus
bad "history extra argument" 2 "tandem: history: unexpected argument" history --node "$S" extra
bad "history no such directory" 1 "tandem: history: --node $work/nothing: no such node directory" history --node "$work/nothing"
bad "history HOST:PORT without cert" 2 "tandem: history: --node 127.0.0.1:9 needs a client certificate" history --node 127.0.0.1:9
bad "quarantine --json --export" 2 "tandem: quarantine: --json and --export exclude each other" quarantine --node "$S" --json --export -
bad "quarantine --export ''" 2 "tandem: quarantine: --export needs a file name" quarantine --node "$S" --export ''
bad "quarantine export unwritable" 1 "tandem: quarantine: --export $work/no/dir/x: No such file or directory" quarantine --node "$S" --export "$work/no/dir/x"

# --- Two real tandemd nodes: a history written by a run. ------------------------------
ports=$(free_ports 2)
read -r P1 P2 <<< "$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
"$T" ca "$CA" --client ops --out "$work/ops" >/dev/null
N1=$work/n1
N2=$work/n2
init_pair n1 "$P1" n2 "$P2"
start "$N1" n1
start "$N2" n2
"$T" append --node "$N1" < "$work/r.jsonl" > /dev/null; check "cluster append" 0 $?
"$T" history --node "$N1" > "$work/out"; check "new cluster history: exit 0" 0 $?
check "new cluster history: epoch 1, no DIR/epochs" "1 n1 1 init - - - -" "$(tail -n +2 "$work/out" | tr -s ' ' | sed 's/ $//')"
# Restart the primary with a torn tail of epoch 1 planted in its quarantine:
# it opens epoch 2 above its log (cause restart) and writes DIR/epochs.
kill -TERM "$pid_n1"; wait "$pid_n1" 2>/dev/null
cp "$S/quarantine/$TORN" "$N1/quarantine/$TORN"
start "$N1" n1
for _ in $(seq 200); do
    "$T" append --node "$N1" < "$work/r.jsonl" > /dev/null 2>&1 && break; sleep 0.05
done
check "restart wrote DIR/epochs" "tandem-epochs 2" "$(head -1 "$N1/epochs" 2>/dev/null)"
A1=127.0.0.1:$P1
A2=127.0.0.1:$P2
C=$work/ops
"$T" history --node "$N1" --json > "$work/h.json"; check "history json: exit 0" 0 $?
check "history json: epochs" "1 n1 1 init 2 n1 11 restart" \
    "$(jget "$work/h.json" '" ".join("%d %s %d %s" % (e["epoch"], e["primary"], e["lsn_first"], e["cause"]) for e in d["epochs"])')"
check "history json: node, pause, risk" "n1 0 None None 0 None" \
    "$(jget "$work/h.json" '" ".join(str(x) for x in (d["node"], d["epochs"][0]["pause_ms"], d["epochs"][0]["time"], d["epochs"][0]["at_risk"], d["epochs"][1]["pause_ms"], d["epochs"][1]["at_risk"]))')"
[[ $(jget "$work/h.json" 'd["epochs"][1]["time"]') =~ $RFC3339 ]]; check "history json: time RFC 3339" 0 $?
check "history json: quarantined to epoch 1" "$TORN 6 10 5 0" \
    "$(jget "$work/h.json" '" ".join(str(x) for x in (lambda q: (q["file"], q["lsn_first"], q["lsn_last"], q["records"], len(d["epochs"][1]["quarantined"])))(d["epochs"][0]["quarantined"][0]))')"
check "history json: its unreadable bytes apart" "$TORN 1" \
    "$(jget "$work/h.json" '" ".join(str(x) for x in (d["quarantine_other"][0]["file"], d["quarantine_other"][0]["unreadable"]))')"
"$T" history --node "$N1" > "$work/h.txt"
check "history text: quarantined column" "1" "$(grep -cE "^1 +n1 +1 +init .* 6-10 \(5 records, $TORN\)$" "$work/h.txt")"
check "history text: unreadable bytes line" "quarantined, unreadable bytes: $TORN (see tandem quarantine)" "$(tail -1 "$work/h.txt")"
# The same from DIR and from HOST:PORT, byte for byte.
same() { # same DESCRIPTION DIR ADDR ARGS...
    local what=$1 dir=$2 addr=$3
    shift 3
    "$T" "$@" --node "$dir" > "$work/d.out" 2> "$work/d.err"
    local rc_d=$?
    "$T" "$@" --node "$addr" --cert "$C" > "$work/a.out" 2> "$work/a.err"
    local rc_a=$?
    check "$what: exit status" "$rc_d" "$rc_a"
    cmp -s "$work/d.out" "$work/a.out"; check "$what: same stdout" 0 $?
    cmp -s "$work/d.err" "$work/a.err"; check "$what: same stderr" 0 $?
}
same "history n1" "$N1" "$A1" history
same "history n1 --json" "$N1" "$A1" history --json
same "history n2 --json" "$N2" "$A2" history --json
same "quarantine n1" "$N1" "$A1" quarantine
same "quarantine n1 --json" "$N1" "$A1" quarantine --json
same "quarantine n1 --export -" "$N1" "$A1" quarantine --export -
check "remote export: the 5 records" "5" "$(wc -l < "$work/a.out")"
same "quarantine n2 (empty)" "$N2" "$A2" quarantine

# --- Hand-written histories (every field), a new cluster, damaged files. ----------
N3=$work/n3
"$T" init "$N3" --cluster c1 --node n3 --listen 127.0.0.1:9 --ca "$CA" --peer n1=127.0.0.1:$P1 --primary n1 >/dev/null
"$T" history --node "$N3" --json > "$work/h3.json"
check "no DIR/epochs: the new cluster's epoch 1" "n3 1 n1 1 init None" \
    "$(jget "$work/h3.json" '" ".join(str(x) for x in (d["node"], len(d["epochs"]), d["epochs"][0]["primary"], d["epochs"][0]["lsn_first"], d["epochs"][0]["cause"], d["epochs"][0]["time"]))')"
printf 'tandem-epochs 2\n1 n1 1 init 0 0 0 0\n3 n3 41 command 1700000360000 12 0 0\n4 n1 97 forced 1700000400000 0 90 96\n' > "$N3/epochs"
"$T" history --node "$N3" > "$work/out"
check "text: command with its pause" "3 n3 41 command 2023-11-14T22:19:20Z 12 - -" "$(sed -n 3p "$work/out" | tr -s ' ' | sed 's/ $//')"
check "text: forced with LSNs at risk" "4 n1 97 forced 2023-11-14T22:20:00Z - 90-96 -" "$(sed -n 4p "$work/out" | tr -s ' ' | sed 's/ $//')"
"$T" history --node "$N3" --json > "$work/h3.json"
check "json: pause and risk" "12 {'lsn_first': 90, 'lsn_last': 96} 2023-11-14T22:20:00Z" \
    "$(jget "$work/h3.json" '" ".join(str(x) for x in (d["epochs"][1]["pause_ms"], d["epochs"][2]["at_risk"], d["epochs"][2]["time"]))')"
printf 'tandem-epochs 1\n1 n1 1\n3 n3 41\n' > "$N3/epochs"
"$T" history --node "$N3" --json > "$work/h3.json"
check "version 1 file: init, no time" "init init None" "$(jget "$work/h3.json" '" ".join(str(x) for x in (d["epochs"][0]["cause"], d["epochs"][1]["cause"], d["epochs"][1]["time"]))')"
damaged() { # damaged DESCRIPTION CONTENT ERROR
    printf "$2" > "$N3/epochs"
    "$T" history --node "$N3" > "$work/out" 2> "$work/err"
    local rc=$?
    check "$1: exit 1" 1 "$rc"
    check "$1: one line" "tandem: history: $N3/epochs: $3" "$(cat "$work/err")"
}
damaged "bad magic" 'tandem-epochs 9\n1 n1 1 init 0 0 0 0\n' "line 1: not 'tandem-epochs 2' or 'tandem-epochs 1'"
damaged "unknown cause" 'tandem-epochs 2\n1 n1 1 init 0 0 0 0\n3 n3 41 bogus 0 0 0 0\n' "line 3: cause: unknown name 'bogus'"
damaged "short line" 'tandem-epochs 2\n1 n1 1 init 0 0 0 0\n3 n3 41 command 0 0 0\n' "line 3: expected 8 fields: epoch, primary id, lsn_first, cause, time_ms, pause_ms, risk_first, risk_last"
damaged "epochs backwards" 'tandem-epochs 2\n3 n1 1 init 0 0 0 0\n2 n3 41 command 0 0 0 0\n' "line 3: epoch not above the previous entry's"
damaged "lsn backwards" 'tandem-epochs 2\n1 n1 9 init 0 0 0 0\n3 n3 4 command 0 0 0 0\n' "line 3: lsn_first below the previous entry's"
damaged "risk not a range" 'tandem-epochs 2\n1 n1 1 init 0 0 0 0\n4 n1 97 forced 0 0 96 90\n' "line 3: LSNs at risk are not a range"
damaged "bad id" 'tandem-epochs 2\n1 n/1 1 init 0 0 0 0\n' "line 2: primary: not a node id"
damaged "no entries" 'tandem-epochs 2\n' "no entries"
damaged "over 128 entries" "tandem-epochs 2\n$(for i in $(seq 1 129); do printf '%d n1 1 init 0 0 0 0\\n' $i; done)" "line 130: more than 128 entries"
damaged "no newline" 'tandem-epochs 2\n1 n1 1 init 0 0 0 0' "line 2: line too long or not newline-terminated"
# Through a running node: the node's error, one line, exit 1.
cp "$N2/epochs" "$work/n2.epochs" 2>/dev/null
printf 'tandem-epochs 2\n1 n1 1 bogus 0 0 0 0\n' > "$N2/epochs"
"$T" history --node "$A2" --cert "$C" > "$work/out" 2> "$work/err"
check "damaged via HOST:PORT: exit 1" 1 $?
check "damaged via HOST:PORT: one line" "tandem: history: $N2/epochs: line 2: cause: unknown name 'bogus'" "$(cat "$work/err")"

# --- The on-call procedure end to end (docs/OPERATIONS.md "On-call failover"). -----
# Two nodes; the backup stops; the primary stores 5 records it cannot get
# acknowledged; it dies; the backup is promoted with --force; the old primary
# comes back as a backup and cuts its divergent tail into quarantine, which
# history gives to epoch 1 and export hands back for reconciliation.
read -r P3 P4 <<< "$(free_ports 2)"
F1=$work/f1
F2=$work/f2
init_pair f1 "$P3" f2 "$P4"
sed -i 's/^write_deadline_ms = .*/write_deadline_ms = 1000/' "$F1/tandem.conf" "$F2/tandem.conf"
start "$F1" f1
start "$F2" f2
head -10 "$work/r.jsonl" | "$T" append --node "$F1" > /dev/null; check "f: acknowledged append" 0 $?
kill -TERM "$pid_f2"; wait "$pid_f2" 2>/dev/null
tail -5 "$work/r.jsonl" | "$T" append --node "$F1" > /dev/null 2>&1; check "f: append without a backup fails" 1 $?
kill -KILL "$pid_f1"; wait "$pid_f1" 2>/dev/null
start "$F2" f2
"$T" failover --node "$F2" --to f2 --force > "$work/out" 2>&1; check "f: forced failover" 0 $?
start "$F1" f1
for _ in $(seq 200); do [[ -n $(ls "$F1/quarantine") ]] && break; sleep 0.05; done
CUTF=$(ls "$F1/quarantine")
check "f: the old primary's tail cut into quarantine" 1 "$(echo "$CUTF" | grep -cE '^00000000000000000001\.seg\.[0-9]+\.cut$')"
"$T" quarantine --node "$F1" --json > "$work/qf.json"
check "f: listing" "cut at a fork point 11 15 5 1 0" \
    "$(jget "$work/qf.json" '" ".join(str(x) for x in (lambda f: (f["reason"], f["lsn_first"], f["lsn_last"], f["records"], f["epochs"][0]["epoch"], f["unreadable_count"]))(d["files"][0]))')"
"$T" history --node "$F1" --json > "$work/hf.json"
check "f: history: forced epoch, tail given to epoch 1" "forced f2 11|$CUTF 11 15" \
    "$(jget "$work/hf.json" '"%s %s %d|%s %d %d" % (d["epochs"][-1]["cause"], d["epochs"][-1]["primary"], d["epochs"][-1]["lsn_first"], d["epochs"][0]["quarantined"][0]["file"], d["epochs"][0]["quarantined"][0]["lsn_first"], d["epochs"][0]["quarantined"][0]["lsn_last"])')"
"$T" quarantine --node "$F1" --export "$work/ef.jsonl"; check "f: export exit 0" 0 $?
check "f: export: the 5 unacknowledged records" "ok" "$(python3 - "$work/ef.jsonl" "$work/r.jsonl" <<'EOF'
import json, sys
exported = [json.loads(l) for l in open(sys.argv[1])]
wanted = [json.loads(l) for l in open(sys.argv[2])][-5:]
ok = [e.pop("lsn") for e in exported] == [11, 12, 13, 14, 15]
ok = ok and [e["message_id"] for e in exported] == [w["message_id"] for w in wanted]
print("ok" if ok else "differ")
EOF
)"

if [[ $fail -ne 0 ]]; then
    for n in n1 n2 f1 f2; do echo "--- $n"; tail -20 "$work/$n.err"; done
fi
exit $fail
