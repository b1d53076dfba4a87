#!/usr/bin/env bash
# tests/cli/verify_status.sh: verification in tandem status (docs/OPERATIONS.md
# "Verification"; docs/PROTOCOL.md §9) with two real tandemd nodes over
# 127.0.0.1. Usage: verify_status.sh TANDEM TANDEMD
#
# Proves:
# - after appends, the primary shows the backup verified through the last LSN
#   with an RFC 3339 verified_at and a small verified_age_seconds, the backup
#   shows itself and the primary likewise, no mismatch, health healthy (exit
#   0); every contract field of DESIGN "Public contracts" is still there;
# - both nodes keep the claim in DIR/verified (docs/FORMAT.md "Verified state");
# - the text view shows the VERIFIED_LSN column and a "verified" line;
# - the background scrubber runs (a full pass, bytes_total = log_bytes);
# - a byte flipped in the backup's sealed segment under the running tandemd is
#   found by the scrubber: scrub.damaged 1 with its range, health degraded,
#   exit 1; flipped back, the next pass clears it: healthy again (the sealed
#   segment comes from appending until the backup reports one, and the byte
#   is in the middle of a batch body, whatever sizes the batches have);
# - a bad [verification] value stops tandemd with a line naming the key.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
ports=$(free_ports 2)
read -r P1 P2 <<< "$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
N1=$work/n1
N2=$work/n2
init_pair n1 "$P1" n2 "$P2"
for n in "$N1" "$N2"; do
    # repair = off: this test watches damage stay found (tests/cli/repair.sh repairs it).
    printf '\n[verification]\nunverified_bound_s = 30\nverify_interval_ms = 200\nscrub_bytes_per_second = 1000000000\nrepair = off\n' >> "$n/tandem.conf"
done
start "$N1" n1
start "$N2" n2
"$T" generate --seed 5 --customers 5 --count 195 > "$work/r.jsonl"
"$T" append --node "$N1" < "$work/r.jsonl" > "$work/lsn"; check "append rc" 0 $?
LAST=$(tail -1 "$work/lsn" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lsn"])')
check "last lsn" 200 "$LAST"

# whether CONDITION (python over the status document s of NODE; nodes by id;
# me = NODE's own object) holds now; the document is left in $work/s.json.
status_is() { # status_is NODE PYTHON_CONDITION
    "$T" status --node "$1" --json > "$work/s.json" 2>/dev/null
    python3 - "$work/s.json" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
nodes = {n["id"]: n for n in s["nodes"]}
me = [n for n in s["nodes"] if n["self"]][0]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}
# until CONDITION (as for status_is) holds, 20 s at most.
until_status() { # until_status NODE PYTHON_CONDITION
    for _ in $(seq 200); do
        status_is "$1" "$2" && return 0
        sleep 0.1
    done
    echo "FAIL waited for: $2"; cat "$work/s.json"; echo; return 1
}
until_status "$N1" "nodes['n2']['verified_lsn'] == $LAST and s['health'] == 'healthy'"
check "primary: backup verified" 0 $?
"$T" status --node "$N1" --json > "$work/s1.json"; check "primary status rc" 0 $?
python3 - "$work/s1.json" "$LAST" <<'PY'; check "primary status json" 0 $?
import json, re, sys
s = json.load(open(sys.argv[1])); last = int(sys.argv[2])
rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
assert s["schema"] == 1 and s["health"] == "healthy" and s["primary"] == "n1", s
assert s["unverified_bound_s"] == 30
for n in s["nodes"]:
    for k in ("id", "role", "epoch", "last_lsn", "durable_lsn", "verified_lsn", "lag", "link",
              "verified_at", "verified_age_seconds", "mismatches"):
        assert k in n, (k, n)
    assert n["verified_lsn"] == last, n
    assert rfc3339.match(n["verified_at"]), n
    assert n["verified_age_seconds"] < 10, n
    assert n["mismatches"] == {"found": 0, "first_divergent": None, "bisecting": False}, n
self = [n for n in s["nodes"] if n["self"]][0]
sc = self["scrub"]
for k in ("enabled", "running", "bytes_done", "bytes_total", "segment", "pass_started",
          "last_full_pass", "passes", "damaged", "damaged_ranges", "error"):
    assert k in sc, (k, sc)
assert sc["enabled"] is True and sc["bytes_total"] == self["log_bytes"] and sc["damaged"] == 0, sc
PY
until_status "$N2" "nodes['n2']['verified_lsn'] == $LAST and nodes['n1']['verified_known']"
check "backup: itself verified" 0 $?
python3 - "$work/s.json" <<'PY'; check "backup status json" 0 $?
import json, sys
s = json.load(open(sys.argv[1]))
n = {x["id"]: x for x in s["nodes"]}
assert n["n2"]["self"] and n["n2"]["verified_known"] and n["n2"]["verified_at"] is not None
assert n["n1"]["verified_lsn"] == n["n2"]["verified_lsn"]
PY
check "primary DIR/verified" "n2 $LAST" "$(sed -n 2p "$N1/verified" | cut -d' ' -f1,2)"
check "backup DIR/verified" "n2 $LAST" "$(sed -n 2p "$N2/verified" | cut -d' ' -f1,2)"
check "DIR/verified magic" "tandem-verified 1" "$(head -1 "$N1/verified")"
"$T" status --node "$N1" > "$work/s.txt"; check "text status rc" 0 $?
check "text VERIFIED_LSN" "$LAST" "$(awk '$1 == "n2" {print $6}' "$work/s.txt")"
check "text verified line" 1 "$(grep -c "^verified    n2: equal to the primary through lsn $LAST, " "$work/s.txt")"
until_status "$N2" "[n for n in s['nodes'] if n['self']][0]['scrub']['passes'] >= 1"
check "backup: a full scrub pass" 0 $?
"$T" status --node "$N2" > "$work/s2.txt"
check "text scrub line: segment bytes read, the log's bytes" 1 "$(grep -cE \
    '^scrub       (reading: read|between passes: the last read) [0-9.]+ ([KMGT]iB|bytes) of segment files \(the log holds [0-9.]+ ([KMGT]iB|bytes)\); [0-9]+ full pass(es)?, last ' \
    "$work/s2.txt")"

# Seal a segment of the backup (the default 64 MiB) with incompressible
# records, then rot a byte of it under its running tandemd: the scrubber must
# find it. A segment seals at the first batch written after it reached its
# size, and where batches end depends on timing (group commit joins the
# appends queued meanwhile, up to 8 MiB a batch, and more queue while a slow
# index holds the primary back), so no one append of a fixed size is sure to
# seal it. Instead, append 2000 records (about 3.5 MB) at a time, wait until
# the backup holds them, and stop once it reports a sealed segment: that takes
# 64 MiB plus at most one batch plus one more append, about 20 appends; 40
# is the bound.
chunk() { # chunk N: records N*2000 .. N*2000+1999 of one seeded stream
    python3 - "$1" <<'PY'
import base64, json, random, sys
n = int(sys.argv[1])
r = random.Random(5000 + n)
for i in range(n * 2000, (n + 1) * 2000):
    sys.stdout.write(json.dumps({"type": "message", "customer_id": 1 + i % 7,
        "time": "2026-11-28T00:00:%02d.%09dZ" % (i % 60, i), "size": 100 + i,
        "destination": "delivered", "classification": "clean", "threat": "",
        "recipient": "r%d@example.net" % (i % 13), "spam_score": 0.5,
        "message_id": "<" + base64.b32encode(r.randbytes(560)).decode().lower() + "@x.example>",
        "sender": "s@example.org", "relay_ip": "203.0.113.7",
        "subject_base64": base64.b64encode(r.randbytes(990)).decode()}) + "\n")
PY
}
append_rc=0
sealed=0
for n in $(seq 0 39); do
    chunk "$n" | "$T" append --node "$N1" > "$work/lsn" || { append_rc=1; break; }
    LAST=$(tail -1 "$work/lsn" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lsn"])')
    until_status "$N2" "me['durable_lsn'] >= $LAST" || break
    if status_is "$N2" "me['sealed_segments'] >= 1"; then sealed=1; break; fi
done
check "appends until a segment seals rc" 0 $append_rc
echo "info $((n + 1)) appends of 2000 records, last lsn ${LAST:-?}, sealed $sealed"
if [[ $sealed -ne 1 ]]; then
    echo "FAIL no sealed segment on the backup after $((n + 1)) appends of 2000 records (last lsn ${LAST:-?}):"
    cat "$work/s.json"; echo
fi
check "backup: a sealed segment" 1 $sealed
[[ $sealed -eq 1 ]] || exit 1 # What follows needs the sealed segment.
S=$N2/log/00000000000000000001.seg
# The byte to flip: the middle of the body of the batch that holds offset 32
# MiB of the sealed segment, so that one batch and nothing else is damaged
# whatever the batches' sizes (docs/FORMAT.md "Segment": a 64-byte header,
# then batches of a 96-byte header, body_size at 28, and the body).
AT=$(batch_body_middle "$S" "end > 32 << 20")
check "a body byte at 32 MiB of the sealed segment" 1 "$([[ -n "$AT" ]] && echo 1 || echo 0)"
flip "$S" "$AT"
until_status "$N2" "[n for n in s['nodes'] if n['self']][0]['scrub']['damaged'] == 1"
check "scrub finds the flipped byte" 0 $?
"$T" status --node "$N2" --json > "$work/s2.json"; check "damaged: status rc" 1 $?
python3 - "$work/s2.json" <<'PY'; check "damaged: range and health" 0 $?
import json, sys
s = json.load(open(sys.argv[1]))
sc = [n for n in s["nodes"] if n["self"]][0]["scrub"]
d = sc["damaged_ranges"][0]
assert s["health"] == "degraded", s["health"]
assert d["segment"] == 1 and 0 < d["lsn_first"] <= d["lsn_last"], d
PY
"$T" status --node "$N2" | grep -c '^health      DEGRADED: scrub found 1 damaged range in sealed segments$' > "$work/c"
check "damaged: text reason" 1 "$(cat "$work/c")"
flip "$S" "$AT"
until_status "$N2" "[n for n in s['nodes'] if n['self']][0]['scrub']['damaged'] == 0 and s['health'] == 'healthy'"
check "flipped back: the next pass clears it" 0 $?

# A bad [verification] value stops tandemd, naming the key.
N3=$work/n3
"$T" init "$N3" --cluster c1 --node n3 --listen 127.0.0.1:1 --ca "$CA" --peer n1=127.0.0.1:$P1 >/dev/null
printf '\n[verification]\nunverified_bound_s = 0\n' >> "$N3/tandem.conf"
"$D" "$N3" 2> "$work/n3.err"; check "bad [verification] rc" 1 $?
check "bad [verification] names the key" 1 "$(grep -c 'bad value: \[verification\] unverified_bound_s = 0' "$work/n3.err")"

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p"; check "tandemd exits 0 on SIGTERM" 0 $?; done
pids=()
exit $fail
