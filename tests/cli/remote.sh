#!/usr/bin/env bash
# tests/cli/remote.sh: the CLI through a node's HOST:PORT (TCP + mutual TLS 1.3
# with a client certificate from --cert DIR or TANDEM_CERT) prints what it
# prints through the node's local socket, with the same exit statuses (DESIGN
# "Public contracts": ADDR is HOST:PORT or a node directory).
# Usage: remote.sh TANDEM CLIENT_SERVER
#
# Method: tests/cli/client_server serves one node on its local socket and, for
# client certificates, on a TLS listener at 127.0.0.1 (net/uv_server.c adopting
# links from net/uv_link.c, as a replicated tandemd serves clients on its
# listen port). The same server answers both ways, so every output must be
# equal byte for byte: append (LSN lines, the first-bad-line rule), get,
# query, customer (found and not found), status and status --json. Then the
# failures: no certificate (usage, exit 2), a certificate of another CA, a
# node's certificate, nothing listening (exit 1; status: unreachable, exit 2).
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
S=$2
unset TANDEM_CERT
. "$(dirname "$0")/lib.sh"
CA=$work/ca
"$T" ca "$CA" --cluster c1 >/dev/null
"$T" ca "$CA" --client ops --out "$work/ops" >/dev/null
"$T" ca "$work/other" --cluster c9 >/dev/null
"$T" ca "$work/other" --client eve --out "$work/eve" >/dev/null
N=$work/n1
"$T" init "$N" --cluster c1 --node n1 --listen 127.0.0.1:7009 --ca "$CA" >/dev/null
"$S" "$N" "$N/tls" > "$work/port" 2> "$work/server.err" &
server=$!
pids+=("$server")
for _ in $(seq 200); do [[ -s "$work/port" ]] && break; sleep 0.05; done
A=127.0.0.1:$(cat "$work/port")
C=$work/ops

# same DESCRIPTION COMMAND ARGS...: run COMMAND through the socket and through
# HOST:PORT; stdout, stderr and exit status must be equal.
same() {
    local what=$1 command=$2
    shift 2
    "$T" "$command" --node "$N" "$@" > "$work/d.out" 2> "$work/d.err"
    local rc_d=$?
    "$T" "$command" --node "$A" --cert "$C" "$@" > "$work/a.out" 2> "$work/a.err"
    local rc_a=$?
    check "$what: exit status" "$rc_d" "$rc_a"
    cmp -s "$work/d.out" "$work/a.out"; check "$what: same stdout" 0 $?
    cmp -s "$work/d.err" "$work/a.err"; check "$what: same stderr" 0 $?
}

"$T" generate --seed 3 --customers 4 --count 60 > "$work/r.jsonl"
head -32 "$work/r.jsonl" | "$T" append --node "$A" --cert "$C" > "$work/lsn_a"
check "append via HOST:PORT rc" 0 $?
check "append via HOST:PORT lsns" '32 {"lsn": 1} {"lsn": 32}' \
    "$(wc -l < "$work/lsn_a") $(head -1 "$work/lsn_a") $(tail -1 "$work/lsn_a")"
tail -n +33 "$work/r.jsonl" | "$T" append --node "$N" > "$work/lsn_d"
check "append via socket continues" '{"lsn": 33} {"lsn": 64}' \
    "$(head -1 "$work/lsn_d") $(tail -1 "$work/lsn_d")"
# The first-bad-line rule, both ways: the same error, the lines before stored.
{ sed -n 10,11p "$work/r.jsonl"; echo '{"type":"message","customer_id":1}'; sed -n 12p "$work/r.jsonl"; } \
    > "$work/bad.jsonl"
"$T" append --node "$N" < "$work/bad.jsonl" > "$work/bad_d" 2> "$work/bad_d.err"
rc_d=$?
"$T" append --node "$A" --cert "$C" < "$work/bad.jsonl" > "$work/bad_a" 2> "$work/bad_a.err"
rc_a=$?
check "bad line rc" "1 1" "$rc_d $rc_a"
check "bad line lsns" "2 2" "$(wc -l < "$work/bad_d") $(wc -l < "$work/bad_a")"
cmp -s "$work/bad_d.err" "$work/bad_a.err"; check "bad line same error" 0 $?
check "bad line error" 1 "$(grep -c '^tandem: line 3: ' "$work/bad_a.err")"

mid=$(sed -n 20p "$work/r.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
user=$(sed -n 2p "$work/r.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["username"])')
same "get" get --message-id "$mid"
cp "$work/a.out" "$work/get.out"
[[ -s "$work/get.out" ]]; check "get found" 0 $?
same "get nothing" get --message-id '<nope@x>'
same "query" query --customer 1
same "query window" query --customer 2 --since 2000-01-01T00:00:00Z --until 2100-01-01T00:00:00Z
same "query nothing" query --customer 999
same "customer" customer --id 2
same "customer username" customer --username "$user"
# The filters a compliance query uses: recipient, sender, a customer by email.
read -r cust rcpt sndr < <(sed -n 40p "$work/r.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["customer_id"], r["recipient"], r["sender"])')
email=$(sed -n 3p "$work/r.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["email"])')
same "query recipient" query --customer "$cust" --recipient "$rcpt"
check "query recipient: found, all of that recipient" 0 "$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if rs and all(r["recipient"] == sys.argv[2] for r in rs) else 1)' "$work/a.out" "$rcpt"; echo $?)"
same "query sender" query --customer "$cust" --sender "$sndr"
check "query sender: found, all of that sender" 0 "$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if rs and all(r["sender"] == sys.argv[2] for r in rs) else 1)' "$work/a.out" "$sndr"; echo $?)"
same "customer email" customer --email "$email"
check "customer email: found" 1 "$(grep -c "\"email\":\"$email\"" "$work/a.out")"
same "customer nothing" customer --id 999
same "status json" status --json
check "status json healthy" 1 "$(grep -c '"health": *"healthy"' "$work/a.out")"
"$T" status --node "$N" > "$work/st_d"; rc_d=$?
"$T" status --node "$A" --cert "$C" | sed "s#$A#$N#" > "$work/st_a"; rc_a=${PIPESTATUS[0]}
check "status rc" "0 0" "$rc_d $rc_a"
cmp -s "$work/st_d" "$work/st_a"; check "status text same (address for dir)" 0 $?
TANDEM_CERT=$C "$T" get --node "$A" --message-id "$mid" | cmp -s - "$work/get.out"
check "TANDEM_CERT" 0 $?

# Failures: one line on stderr each, and the documented exit status.
"$T" get --node "$A" --message-id "$mid" 2> "$work/err"; check "no cert rc" 2 $?
check "no cert names --cert and TANDEM_CERT" 1 "$(grep -c -- '--cert DIR or set TANDEM_CERT' "$work/err")"
"$T" get --node "$A" --cert "$work/eve" --message-id "$mid" 2> "$work/err"; check "other CA rc" 1 $?
check "other CA error" 1 "$(grep -c 'not issued by the cluster CA' "$work/err")"
check "other CA one line" 1 "$(wc -l < "$work/err")"
"$T" status --node "$A" --cert "$work/eve" >/dev/null 2>&1; check "other CA status rc" 2 $?
"$T" get --node "$A" --cert "$N/tls" --message-id "$mid" 2> "$work/err"; check "node cert rc" 1 $?
check "node cert error" 1 "$(grep -c 'certificate of node n1, not of a client' "$work/err")"
"$T" append --node "$A" --cert "$work/nothing" < /dev/null 2> "$work/err"; check "missing cert dir rc" 1 $?
check "missing cert dir error" 1 "$(grep -c 'client certificate' "$work/err")"
"$T" get --node "$A" --cert "$C" 2>/dev/null; check "usage still checked rc" 2 $?
# A server without the inspection callback (this test server): HISTORY and
# QUARANTINE are answered with an error, one line (docs/PROTOCOL.md §7.6).
"$T" history --node "$A" --cert "$C" > "$work/out" 2> "$work/err"; check "history not served rc" 1 $?
check "history not served error" "tandem: history: HISTORY is not served by this node" "$(cat "$work/err")"
"$T" quarantine --node "$A" --cert "$C" --export - > "$work/out" 2> "$work/err"
check "quarantine not served rc" 1 $?
check "quarantine not served error" "tandem: quarantine: QUARANTINE is not served by this node" "$(cat "$work/err")"
# VERIFY the same (docs/PROTOCOL.md §7.7): one line, exit 2, nothing on stdout.
"$T" verify --node "$A" --cert "$C" > "$work/out" 2> "$work/err"; check "verify not served rc" 2 $?
check "verify not served error" "tandem: verify $A: VERIFY is not served by this node" "$(cat "$work/err")"
check "verify not served stdout" "" "$(cat "$work/out")"

kill -TERM "$server"
wait "$server"; check "server stops on SIGTERM" 0 $?
"$T" get --node "$A" --cert "$C" --message-id "$mid" 2> "$work/err"; check "unreachable get rc" 1 $?
check "unreachable get error" 1 "$(grep -c 'connection refused' "$work/err")"
"$T" status --node "$A" --cert "$C" > /dev/null 2> "$work/err"; check "unreachable status rc" 2 $?
check "unreachable status error" 1 "$(grep -c "node at $A" "$work/err")"
"$T" status --node "$A" --cert "$C" --json 2>/dev/null |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["health"] == "broken" else 1)'
check "unreachable status json broken" "2 0" "${PIPESTATUS[*]}"
"$T" append --node "$A" --cert "$C" < "$work/r.jsonl" > "$work/none" 2>/dev/null
check "unreachable append rc" 1 $?
check "unreachable append prints no lsn" 0 "$(wc -c < "$work/none")"
exit $fail
