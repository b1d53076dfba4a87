#!/usr/bin/env bash
# tests/cli/dry_run.sh: what `tandem failover --dry-run` says a promotion
# would lose, counted per customer (DESIGN "Switchover, failover";
# docs/PROTOCOL.md §7.5), with three real tandemd nodes over 127.0.0.1.
# Usage: dry_run.sh TANDEM TANDEMD
#
# Scenario: n1 primary, n2 and n3 backups, min_copies 2. 40 records are
# acknowledged by all; n3 is killed; 60 more are acknowledged by n1 and n2;
# n1 is killed; n3 is started again, behind n2.
#
# Proves:
# - the dry run on n3 would be refused (n2 holds more durable data), exit 1,
#   and counts the LSNs at risk (beyond n3's durable LSN) in n2's copy,
#   fetched from it: every LSN through n2's durable LSN counted once, and
#   each customer's count equal to the records the appends gave that
#   customer in that range (the LSNs `tandem append` printed);
# - the summary prints the range, where it was counted and a line per
#   customer;
# - with a byte of n2's copy of the range flipped, n2 answers the FETCH with
#   the error and nothing is counted (damaged bytes never leave a node);
# - with n2's FETCH service off ([verification] repair = off: it answers no
#   FETCH), the dry run still answers, after the count's bound, with nothing
#   counted, the count's error naming n2, and the customers unknown;
# - a forced failover to n3 names the same LSNs at risk, says they are
#   counted only by a dry run, and n2, fenced, cuts them into its quarantine
#   (tandem quarantine: LSN 41..100, 60 records);
# - n3 traces who asked for each failover (the local socket's uid and pid)
#   and what came of it.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
ports=$(free_ports 3)
read -r P1 P2 P3 <<< "$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
declare -A PORT=([n1]=$P1 [n2]=$P2 [n3]=$P3)
for n in n1 n2 n3; do
    peers=()
    for m in n1 n2 n3; do
        [[ $m == "$n" ]] || peers+=(--peer "$m=127.0.0.1:${PORT[$m]}")
    done
    "$T" init "$work/$n" --cluster c1 --node "$n" --listen "127.0.0.1:${PORT[$n]}" --ca "$CA" \
        "${peers[@]}" --primary n1 >/dev/null
done
start "$work/n1" n1
start "$work/n2" n2
start "$work/n3" n3

until_status "$work/n1" "s['health'] == 'healthy'"
check "the cluster is healthy" 0 $?
"$T" generate --seed 3 --customers 5 --count 95 > "$work/r.jsonl"
head -n 40 "$work/r.jsonl" | "$T" append --node "$work/n1" > "$work/lsn1"
check "first appends rc" 0 $?
until_status "$work/n1" "nodes['n3']['durable_lsn'] == 40"
check "n3 holds the first 40" 0 $?
kill -KILL "$pid_n3"
tail -n +41 "$work/r.jsonl" | "$T" append --node "$work/n1" > "$work/lsn2"
check "appends without n3 rc" 0 $?
check "appends without n3: 60 LSNs" 60 "$(wc -l < "$work/lsn2")"
until_status "$work/n1" "nodes['n2']['durable_lsn'] == 100"
check "n2 holds all 100" 0 $?
kill -KILL "$pid_n1"
start "$work/n3" n3

# The dry run on n3 (--json), until its answer says n2 holds more (n3 may
# still count n1 as alive, or not hear n2 yet), 30 s at most: exit status in
# rc, the answer in $work/dry.
dry_run_json() {
    for _ in $(seq 100); do
        "$T" failover --node "$work/n3" --to n3 --dry-run --json > "$work/dry" 2> "$work/dry.err"
        rc=$?
        python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("refusal") != "not_highest")' \
            "$work/dry" 2>/dev/null && return 0
        sleep 0.3
    done
    echo "FAIL no dry run answer with refusal not_highest:"; cat "$work/dry" "$work/dry.err"
}
dry_run_text() { # the summary of the same, in $work/dry
    "$T" failover --node "$work/n3" --to n3 --dry-run > "$work/dry" 2> "$work/dry.err"
    rc=$?
}
dry_run_json
check "dry run on n3: exit 1 (would be refused)" 1 "$rc"
python3 - "$work/dry" "$work/r.jsonl" "$work/lsn1" "$work/lsn2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
records = [json.loads(l) for l in open(sys.argv[2])]
lsns = [json.loads(l)["lsn"] for f in sys.argv[3:5] for l in open(f)]
customer = dict(zip(lsns, (r["customer_id"] for r in records)))
nodes = {n["id"]: n for n in doc["nodes"]}
risk = doc["risk"]
assert doc["outcome"] == "dry run" and doc["refusal"] == "not_highest", doc
assert doc["refusal_node"] == "n2", doc
assert risk["lsn_first"] == nodes["n3"]["durable_lsn"] + 1 == 41, risk
assert risk["counted_in"] == "n2" and risk["count_error"] is None, risk
assert risk["counted_lsn_last"] >= nodes["n2"]["durable_lsn"] == 100, (risk, nodes["n2"])
assert risk["unknown_lsn_first"] == 0 and risk["own_lsn_last"] == 0, risk
want = {}
for lsn in range(risk["lsn_first"], risk["counted_lsn_last"] + 1):
    want[customer[lsn]] = want.get(customer[lsn], 0) + 1
got = {c["customer_id"]: c["records"] for c in risk["customers"]}
assert got == want and risk["other_customers_records"] == 0, (got, want)
assert risk["records_counted"] == sum(want.values()) == 60, risk
ids = [c["customer_id"] for c in risk["customers"]]
assert ids == sorted(ids), ids
PY
check "risk counted per customer in n2's copy, as the appends gave them" 0 $?
dry_run_text
check "summary: exit 1" 1 "$rc"
check "summary: the range" 1 "$(grep -c '^at risk: LSN 41\.\.100 (60 records)$' "$work/dry")"
check "summary: where it was counted" 1 \
    "$(grep -c "^  counted in n2's copy (LSN 41\.\.100): 60 records$" "$work/dry")"
check "summary: a line per customer" 1 \
    "$(( $(grep -c '^    customer [0-9]*: [0-9]* records$' "$work/dry") >= 2 ))"

# A damaged batch in n2's copy of the range (a byte flipped under its
# running tandemd, in the batch that holds LSN 41): n2 answers the FETCH with
# the error, never with the bytes, and nothing is counted. Then the byte is
# flipped back.
S2=$(ls "$work/n2/log/"*.seg | sort | tail -n 1)
AT=$(batch_body_middle "$S2" "lsn_first <= 41 < lsn_first + count")
check "a batch of n2's copy holds LSN 41" 1 "$([[ -n "$AT" ]] && echo 1 || echo 0)"
flip "$S2" "$AT"
dry_run_json
check "damaged copy: exit 1" 1 "$rc"
python3 - "$work/dry" <<'PY'
import json, sys
risk = json.load(open(sys.argv[1]))["risk"]
assert risk["records_counted"] == 0 and risk["customers"] == [], risk
assert risk["unknown_lsn_first"] == 41 and risk["counted_in"] is None, risk
assert risk["count_error"].startswith("n2 answered "), risk
PY
check "damaged copy: n2 answers the error, nothing counted" 0 $?
flip "$S2" "$AT"

# n2 answers no FETCH: the count gives up after its bound, and says why.
kill -TERM "$pid_n2"
wait "$pid_n2" 2>/dev/null
printf '\n[verification]\nrepair = off\n' >> "$work/n2/tandem.conf"
start "$work/n2" n2
dry_run_json
check "unanswered count: exit 1" 1 "$rc"
python3 - "$work/dry" <<'PY'
import json, sys
risk = json.load(open(sys.argv[1]))["risk"]
assert risk["lsn_first"] == 41 and risk["records_counted"] == 0, risk
assert risk["counted_in"] is None and risk["unknown_lsn_first"] == 41, risk
assert "n2 did not answer within" in risk["count_error"], risk
PY
check "unanswered count: nothing counted, n2 named, customers unknown" 0 $?
dry_run_text
check "unanswered count: the summary" 1 \
    "$(grep -c '^  LSN 41\.\.100: not counted (n2 did not answer within [0-9]* ms): customers unknown$' "$work/dry")"

# Forced anyway: the answer names the same LSNs at risk, not counted (the
# node ahead is fenced and cuts them into its quarantine, where tandem
# quarantine finds them: 60 records from LSN 41).
"$T" failover --node "$work/n3" --to n3 --force --json > "$work/forced" 2> "$work/forced.err"
check "forced failover: exit 0" 0 $?
python3 - "$work/forced" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
risk = doc["risk"]
assert doc["outcome"] == "done", doc
assert risk["lsn_first"] == 41 and risk["records_counted"] == 0, risk
assert risk["unknown_lsn_first"] == 41 and risk["count_error"].startswith("counted only by a dry run"), risk
PY
check "forced failover: the LSNs at risk, counted only by a dry run" 0 $?
# Audit: n3 traced who asked for each failover (here the CLI on the local
# socket: its uid and pid) and what came of it.
check "n3 traced who asked for the dry runs" 1 "$(grep -c 'client [0-9]* (the local socket, uid '"$(id -u)"', pid [0-9]*): FAILOVER to n3, dry run requested' "$work/n3.err" | awk '{print ($1 >= 1)}')"
check "n3 traced who forced the failover" 1 "$(grep -c 'client [0-9]* (the local socket, uid '"$(id -u)"', pid [0-9]*): FAILOVER to n3, forced requested' "$work/n3.err")"
check "n3 traced its outcome" 1 "$(grep -c 'FAILOVER answered: outcome done' "$work/n3.err")"
for _ in $(seq 100); do
    "$T" quarantine --node "$work/n2" --json > "$work/q.json" 2>/dev/null &&
        python3 -c 'import json, sys; sys.exit(not json.load(open(sys.argv[1]))["files"])' "$work/q.json" && break
    sleep 0.2
done
check "forced failover: n2 cut LSN 41..100 into its quarantine" "41 100 60" \
    "$(python3 -c 'import json, sys; f = json.load(open(sys.argv[1]))["files"][0]; print(f["lsn_first"], f["lsn_last"], f["records"])' "$work/q.json")"
exit $fail
