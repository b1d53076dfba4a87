#!/usr/bin/env bash
# tests/cli/repair.sh: repair of damaged sealed segments from a verified copy
# (docs/OPERATIONS.md "Damage"; docs/PROTOCOL.md §9.4) with two real tandemd
# nodes over 127.0.0.1, 16 KiB segments, a scrub pass every 200 ms.
# Usage: repair.sh TANDEM TANDEMD
#
# Proves:
# - a byte flipped in the backup's sealed segment under its running tandemd is
#   found by the scrubber and repaired from the primary: afterwards the file is
#   byte for byte the primary's, the damaged file is in DIR/quarantine/, every
#   record reads as before, status counts one repair and is healthy (exit 0);
# - the same on the primary, repaired from the backup;
# - a zeroed run of about 25 batches in the backup's copy is repaired in
#   several FETCHes (the primary counts them), file equal to the primary's;
# - the same batch damaged on both copies: each node reports the range LOST
#   (JSON repair.lost_ranges, a LOST line, health degraded, exit 1) and no
#   file is altered (bytes compared before and after), nothing is quarantined;
# - queries over the lost range fail with an error, never with bad data;
# - a damaged segment header (backup) and footer (primary), which no copy's
#   batches restore, are rebuilt by each node from its own segment;
# - everything runs under umask 0, yet every data file the nodes made is 0600
#   and every directory under a node directory 0700.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
# Every file is made under umask 0: modes must come from the code (checked
# at the end).
umask 000
ports=$(free_ports 2)
read -r P1 P2 <<< "$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
N1=$work/n1
N2=$work/n2
init_pair n1 "$P1" n2 "$P2"
for n in "$N1" "$N2"; do
    printf '\n[log]\nsegment_size = 16384\n[verification]\nunverified_bound_s = 60\nverify_interval_ms = 200\nscrub_bytes_per_second = 1000000000\nscrub_pause_ms = 200\n' >> "$n/tandem.conf"
done
start "$N1" n1
start "$N2" n2
"$T" generate --seed 7 --customers 4 --count 1596 > "$work/r.jsonl"
# 40 appends of 40 records: 40 batches at least, several 16 KiB segments.
rc=0
for i in $(seq 0 39); do
    sed -n "$((i * 40 + 1)),$((i * 40 + 40))p" "$work/r.jsonl" | "$T" append --node "$N1" > "$work/lsn" || rc=1
done
check "appends rc" 0 $rc
LAST=$(tail -1 "$work/lsn" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lsn"])')
check "last lsn" 1600 "$LAST"

until_status "$N1" "nodes['n2']['verified_lsn'] == $LAST and s['health'] == 'healthy' and me['sealed_segments'] >= 4"
check "primary: backup verified, segments sealed" 0 $?
until_status "$N2" "me['verified_lsn'] == $LAST and me['sealed_segments'] >= 4 and me['scrub']['passes'] >= 1"
check "backup: verified, segments sealed, scrubbed" 0 $?
mapfile -t SEGS < <(cd "$N1/log" && ls *.seg | sort)
same_batches() { # same_batches FILE1 FILE2: equal bytes between header and footer
    # (a header, and so the footer's checksum, differ where one node's segment
    # was prepared and the other's not: docs/FORMAT.md "Prepared segments").
    python3 - "$1" "$2" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
sys.exit(0 if len(a) == len(b) and a[64:-80] == b[64:-80] else 1)
PY
}
check "at least 6 segments" 1 "$(( ${#SEGS[@]} >= 6 ))"
for i in 0 1 2 3 4; do
    check "segment ${SEGS[$i]} holds the same batches on both nodes" 0 \
        "$(same_batches "$N1/log/${SEGS[$i]}" "$N2/log/${SEGS[$i]}"; echo $?)"
done
records() { # records NODE: every record it serves, in a stable order
    for c in 1 2 3 4; do
        "$T" query --node "$1" --customer "$c"
        "$T" customer --node "$1" --id "$c"
    done
}
records "$N2" > "$work/before"; check "records read before" 0 $?
records "$N1" > "$work/before1"
check "records before: both nodes" 0 "$(cmp -s "$work/before1" "$work/before"; echo $?)"
flip() { # flip FILE OFFSET...: xor each byte at OFFSET with 0x40, all in one process
    python3 - "$@" <<'PY'
import sys
for path, offset in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(path, "r+b") as f:
        f.seek(int(offset)); b = f.read(1); f.seek(int(offset)); f.write(bytes([b[0] ^ 0x40]))
PY
}
# Inside the data of a segment: past its header, well before its footer.
OFF=$((64 + 6000))
repaired_ok() { # repaired_ok NODE DIR PEER_DIR SEGMENT WHAT [REPAIRS]
    local n=${6:-1}
    until_status "$1" "me['repair']['repaired'] == $n and me['scrub']['damaged'] == 0 and s['health'] == 'healthy'"
    check "$5: found and repaired, healthy" 0 $?
    "$T" status --node "$1" > "$work/s.txt"; check "$5: status rc 0" 0 $?
    check "$5: text repair line" 1 "$(grep -c "^repair      $n ranges\{0,1\} repaired from verified copies; 0 lost$" "$work/s.txt")"
    # Its own bytes before the damage ($work/orig): segment headers are each
    # node's own (a prepared segment's flag), so the peer's file may differ there.
    check "$5: file equals its bytes before the damage" 0 "$(cmp -s "$2/log/$4" "$work/orig"; echo $?)"
    check "$5: batches equal the verified copy's" 0 "$(same_batches "$2/log/$4" "$3/log/$4"; echo $?)"
    check "$5: damaged file in quarantine" 1 "$(ls "$2/quarantine" 2>/dev/null | grep -c "^$4\.[0-9]*\.damaged$")"
    local q
    q="$2/quarantine/$(ls "$2/quarantine" | grep "^$4\.")"
    check "$5: quarantined bytes are the damaged ones" 1 \
        "$([[ $(stat -c %s "$q") == $(stat -c %s "$work/orig") ]] && ! cmp -s "$q" "$work/orig" && echo 1)"
    records "$2" > "$work/after"
    check "$5: every record reads as before" 0 "$(cmp -s "$work/before" "$work/after"; echo $?)"
}

# 1. The backup's copy rots; the primary's verified copy restores it.
S=${SEGS[0]}
cp "$N2/log/$S" "$work/orig"
flip "$N2/log/$S" $OFF
repaired_ok "$N2" "$N2" "$N1" "$S" "backup damage"
"$T" status --node "$N1" --json > "$work/s1.json"
check "primary served the fetch" 1 "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(int([n for n in s["nodes"] if n["self"]][0]["repair"]["fetches_served"] >= 1))' "$work/s1.json")"

# 2. The primary's own copy rots; the backup's verified copy restores it.
S=${SEGS[1]}
cp "$N1/log/$S" "$work/orig"
flip "$N1/log/$S" $OFF
repaired_ok "$N1" "$N1" "$N2" "$S" "primary damage"

# 3. A long run of the backup's batches rots (a zeroed region): the span takes
# several FETCHes (TDM_UV_REPAIR_FETCH_BATCHES_MAX batches each).
"$T" generate --seed 8 --customers 4 --count 124 | tail -n 120 > "$work/more.jsonl"
rc=0
while read -r line; do echo "$line" | "$T" append --node "$N1" > "$work/lsn" || rc=1; done < "$work/more.jsonl"
check "single appends rc" 0 $rc
LAST=$(tail -1 "$work/lsn" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lsn"])')
check "last lsn" 1720 "$LAST"
until_status "$N2" "me['verified_lsn'] == $LAST and nodes['n1']['verified_lsn'] == $LAST"
check "backup: verified again" 0 $?
S=""
for f in $(cd "$N1/log" && ls *.seg | sort); do
    first=$((10#${f%.seg}))
    if (( first > 1600 )) && [[ -f "$N2/log/$f" ]] && cmp -s "$N1/log/$f" "$N2/log/$f" &&
        python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(0 if d[-80:-76]==b"FOOT" else 1)' "$N1/log/$f"; then
        S=$f; break
    fi
done
check "a sealed segment of single-record batches" 1 "$([[ -n "$S" ]] && echo 1 || echo 0)"
records "$N2" > "$work/before"
cp "$N2/log/$S" "$work/orig"
python3 - "$N2/log/$S" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(64 + 100); f.write(bytes(9000))
PY
repaired_ok "$N2" "$N2" "$N1" "$S" "long span" 2
"$T" status --node "$N1" --json > "$work/s1.json"
check "long span: fetched in several FETCHes" 1 "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(int([n for n in s["nodes"] if n["self"]][0]["repair"]["fetches_served"] >= 3))' "$work/s1.json")"

# 4. A segment's header rots on the backup, its footer on the primary: no
# copy's batches hold them, so each node rebuilds its own from the segment
# (its footer's checksum proves a header; the batches and the next segment
# prove a footer).
S=${SEGS[3]}
cp "$N2/log/$S" "$work/orig"
flip "$N2/log/$S" 30
repaired_ok "$N2" "$N2" "$N1" "$S" "header damage" 3
grep -q "REPAIRED its header or footer from its own bytes" "$work/n2.err"
check "header damage: the trace says how" 0 $?
S=${SEGS[4]}
cp "$N1/log/$S" "$work/orig"
flip "$N1/log/$S" $(($(stat -c %s "$N1/log/$S") - 20))
repaired_ok "$N1" "$N1" "$N2" "$S" "footer damage" 2

# 5. The same batch rots on both copies: lost, nothing altered.
S=${SEGS[2]}
flip "$N1/log/$S" $OFF "$N2/log/$S" $OFF
cp "$N1/log/$S" "$work/damaged1"
cp "$N2/log/$S" "$work/damaged2"
ls "$N1/quarantine" "$N2/quarantine" > "$work/quarantine.before"
for n in "$N1" "$N2"; do
    b=$(basename "$n")
    until_status "$n" "me['repair']['lost'] == 1 and s['health'] == 'degraded'"
    check "both damaged: $b reports the range lost" 0 $?
    python3 - "$work/s.json" "$S" <<'PY'; check "both damaged: $b lost range in JSON" 0 $?
import json, sys
s = json.load(open(sys.argv[1]))
me = [n for n in s["nodes"] if n["self"]][0]
l = me["repair"]["lost_ranges"][0]
assert l["segment"] == int(sys.argv[2].split(".")[0]), l
assert 0 < l["lsn_first"] <= l["lsn_last"], l
assert "no verified copy" in l["reason"], l
assert me["repair"]["repaired"] >= 1 and me["scrub"]["damaged"] == 1, me
PY
    "$T" status --node "$n" > "$work/s.txt"; check "both damaged: $b status rc 1" 1 $?
    check "both damaged: $b alarm line" 1 "$(grep -c "^LOST        log/$S lsn [0-9]*\.\.[0-9]*: no verified copy holds it intact" "$work/s.txt")"
    check "both damaged: $b health line" 1 "$(grep -c '^health      DEGRADED: LOST: 1 damaged range' "$work/s.txt")"
done
sleep 1 # Time for a wrong repair to happen, if one were to.
check "both damaged: n1 file unchanged" 0 "$(cmp -s "$N1/log/$S" "$work/damaged1"; echo $?)"
check "both damaged: n2 file unchanged" 0 "$(cmp -s "$N2/log/$S" "$work/damaged2"; echo $?)"
ls "$N1/quarantine" "$N2/quarantine" > "$work/quarantine.after"
check "both damaged: nothing quarantined" 0 "$(cmp -s "$work/quarantine.before" "$work/quarantine.after"; echo $?)"
records "$N2" > "$work/lost.out" 2> "$work/lost.err"
check "both damaged: a query over the range fails" 1 "$(grep -c . "$work/lost.err" | awk '{print ($1 > 0)}')"
check "both damaged: no record read differs" 0 \
    "$(grep -vxFf "$work/before" "$work/lost.out" | wc -l)"

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p"; check "tandemd exits 0 on SIGTERM" 0 $?; done
# Made under umask 0 (top): the customer data is the owner's alone
# (RELIABILITY S13). Every file 0600 (segments, the prepared one, progress,
# quarantine copies, index, epochs, the node key) but tandem.conf (0640) and
# the certificates (public); every directory 0700 but the node's own (0750).
check "umask 0: files 0600" "" "$(find "$N1" "$N2" -type f ! -perm 600 ! -name tandem.conf \
    ! -name '*.crt' -printf '%m %p\n')"
check "umask 0: directories 0700" "" "$(find "$N1" "$N2" -mindepth 1 -type d ! -perm 700 -printf '%m %p\n')"
check "umask 0: node directories 0750, tandem.conf 0640" "750 640 750 640" \
    "$(stat -c %a "$N1" "$N1/tandem.conf" "$N2" "$N2/tandem.conf" | tr '\n' ' ' | sed 's/ $//')"
check "umask 0: quarantine and sealed segments were there to check" 1 \
    "$(( $(ls "$N1/quarantine" "$N2/quarantine" | grep -c '\.seg') > 0 && ${#SEGS[@]} >= 6 ))"
pids=()

# Bad [verification] repair, scrub_pause_ms and [log] segment_size values stop
# tandemd with a line naming the key.
N3=$work/n3
"$T" init "$N3" --cluster c1 --node n3 --listen 127.0.0.1:1 --ca "$CA" --peer n1=127.0.0.1:$P1 >/dev/null
cp "$N3/tandem.conf" "$work/n3.conf"
for bad in '[verification]|repair = maybe' '[verification]|scrub_pause_ms = 5' '[log]|segment_size = 1000'; do
    section=${bad%%|*}
    line=${bad#*|}
    { cat "$work/n3.conf"; printf '\n%s\n%s\n' "$section" "$line"; } > "$N3/tandem.conf"
    "$D" "$N3" 2> "$work/n3.err"; check "bad $section $line: rc" 1 $?
    check "bad $section $line: names the key" 1 "$(grep -cF "bad value: $section $line" "$work/n3.err")"
done
exit $fail
