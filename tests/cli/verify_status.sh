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
#   exit 1; flipped back, the next pass clears it: healthy again;
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

# until CONDITION (python over the status document s of NODE) holds, 20 s at most.
until_status() { # until_status NODE PYTHON_CONDITION
    for _ in $(seq 200); do
        "$T" status --node "$1" --json > "$work/s.json" 2>/dev/null
        python3 - "$work/s.json" "$2" <<'PY' && return 0
import json, sys
s = json.load(open(sys.argv[1]))
nodes = {n["id"]: n for n in s["nodes"]}
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
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

# Seal a segment (64 MiB of incompressible records), then rot a byte of the
# backup's copy under its running tandemd: the scrubber must find it.
python3 - <<'PY' | "$T" append --node "$N1" >/dev/null; check "append 64 MiB rc" 0 $?
import base64, json, random, sys
r = random.Random(5)
for i in range(39000):
    sys.stdout.write(json.dumps({"type": "message", "customer_id": 1 + i % 7,
        "time": "2026-11-28T00:00:%02d.%09dZ" % (i % 60, i), "size": 100 + i,
        "destination": "delivered", "classification": "clean", "threat": "",
        "recipient": "r%d@example.net" % (i % 13), "spam_score": 0.5,
        "message_id": "<" + base64.b32encode(r.randbytes(560)).decode().lower() + "@x.example>",
        "sender": "s@example.org", "relay_ip": "203.0.113.7",
        "subject_base64": base64.b64encode(r.randbytes(990)).decode()}) + "\n")
PY
S=$N2/log/00000000000000000001.seg
until_status "$N2" "[n for n in s['nodes'] if n['self']][0]['sealed_segments'] >= 1"
check "backup: a sealed segment" 0 $?
flip() { python3 -c 'import sys; p=sys.argv[1]; f=open(p,"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$@"; }
flip "$S" 33554432
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
flip "$S" 33554432
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
