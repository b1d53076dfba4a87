#!/usr/bin/env bash
# tests/cli/ipv6.sh: a cluster whose nodes listen on IPv6 addresses ([::1]:PORT
# in tandem.conf and --node, DESIGN "Public contracts") replicates and answers
# clients exactly as over IPv4: two tandemd, appends through the primary's
# [::1]:PORT, the backup holds every record, both statuses show the link up,
# a node's own line shows its address in brackets, and a query through either
# address prints the same records. Skipped (exit 77) where ::1 cannot be bound.
# Usage: ipv6.sh TANDEM TANDEMD
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
ports=$(python3 -c '
import socket
ss = [socket.socket(socket.AF_INET6) for _ in range(2)]
for s in ss: s.bind(("::1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' 2>/dev/null) || { echo "skip: cannot bind ::1"; exit 77; }
read -r P1 P2 <<<"$ports"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
"$T" ca "$CA" --client ops --out "$work/ops" >/dev/null
"$T" init "$work/n1" --cluster c1 --node n1 --listen "[::1]:$P1" --ca "$CA" --peer "n2=[::1]:$P2" >/dev/null
check "init n1 on [::1]" 0 $?
"$T" init "$work/n2" --cluster c1 --node n2 --listen "[::1]:$P2" --ca "$CA" --peer "n1=[::1]:$P1" >/dev/null
check "init n2 on [::1]" 0 $?
start "$work/n1" n1
start "$work/n2" n2

# node_json ADDR ID FIELD: FIELD of node ID in the status document of ADDR.
node_json() {
    "$T" status --node "$1" --cert "$work/ops" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
n = [n for n in d["nodes"] if n["id"] == sys.argv[1]]
print(n[0].get(sys.argv[2]) if n else "none")' "$2" "$3"
}
for _ in $(seq 200); do [[ $(node_json "[::1]:$P1" n2 link) == up ]] && break; sleep 0.05; done
check "primary sees the backup's link up" up "$(node_json "[::1]:$P1" n2 link)"

"$T" generate --seed 6 --customers 3 --count 40 > "$work/r.jsonl"
"$T" append --node "[::1]:$P1" --cert "$work/ops" < "$work/r.jsonl" > "$work/lsn"
check "append through [::1] rc" 0 $?
check "append through [::1]: acknowledged" 43 "$(wc -l < "$work/lsn")"
for _ in $(seq 200); do [[ $(node_json "$work/n2" n2 last_lsn) == 43 ]] && break; sleep 0.05; done
check "the backup holds every record" 43 "$(node_json "$work/n2" n2 last_lsn)"
check "the backup sees its primary's link up" up "$(node_json "[::1]:$P2" n1 link)"
check "the backup's own line names its [::1] address" "[::1]:$P2" \
    "$("$T" status --node "[::1]:$P2" --cert "$work/ops" | awk '$1 == "n2" { print $NF }')"
"$T" query --node "[::1]:$P1" --cert "$work/ops" --customer 2 > "$work/q1"
"$T" query --node "[::1]:$P2" --cert "$work/ops" --customer 2 > "$work/q2"
check "query through either address: found" 0 "$([[ -s $work/q1 ]]; echo $?)"
check "query through either address: the same records" 0 "$(cmp -s "$work/q1" "$work/q2"; echo $?)"
exit $fail
