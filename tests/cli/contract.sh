#!/usr/bin/env bash
# tests/cli/contract.sh: end-to-end checks of the tandem CLI contract (DESIGN
# "Public contracts"): exit codes, stdout/stderr shapes, streaming append, the
# first-bad-line rule, round trips, status health. Usage: contract.sh TANDEM
set -uo pipefail
T=$1
unset TANDEM_CERT # A HOST:PORT below must be refused for want of a certificate.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fail=1; fi
}
N=$work/a/b/node
"$T" init "$N" --cluster c1 --node n1 >/dev/null; check "init rc" 0 $?
"$T" init "$N" --cluster c1 --node n1 2>/dev/null; check "init twice rc" 1 $?
"$T" generate --seed 7 --customers 5 --count 100 > "$work/r.jsonl"; check "generate rc" 0 $?
check "generate lines" 105 "$(wc -l < "$work/r.jsonl")"
check "generate deterministic" "$(md5sum < "$work/r.jsonl")" "$("$T" generate --seed 7 --customers 5 --count 100 | md5sum)"
"$T" append --node "$N" < "$work/r.jsonl" > "$work/lsn"; check "append rc" 0 $?
check "append lsn lines" 105 "$(wc -l < "$work/lsn")"
check "append first/last" '{"lsn": 1} {"lsn": 105}' "$(head -1 "$work/lsn") $(tail -1 "$work/lsn")"
# A bad 7th line (with an empty 3rd line counted).
{ sed -n 6,7p "$work/r.jsonl"; echo; sed -n 8,10p "$work/r.jsonl"; echo '{"type":"message","customer_id":1}'; sed -n 11p "$work/r.jsonl"; } > "$work/bad.jsonl"
"$T" append --node "$N" < "$work/bad.jsonl" > "$work/lsn2" 2> "$work/err"; check "bad line rc" 1 $?
check "bad line lsns" 5 "$(wc -l < "$work/lsn2")"
check "bad line error" 1 "$(grep -c '^tandem: line 7: ' "$work/err")"
check "bad line error lines" 1 "$(wc -l < "$work/err")"
# Round trip: what get prints equals the input with lsn added.
mid=$(sed -n 50p "$work/r.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
"$T" get --node "$N" --message-id "$mid" > "$work/get"; check "get rc" 0 $?
python3 - "$work/r.jsonl" "$work/get" "$mid" <<'PY' ; check "get round trip" 0 $?
import json, sys
want = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("message_id") == sys.argv[3]]
got = [json.loads(l) for l in open(sys.argv[2])]
for g in got: g.pop("lsn")
sys.exit(0 if want == got[:len(want)] else 1)
PY
"$T" get --node "$N" --message-id '<nope@x>' > "$work/none"; check "get nothing rc" 1 $?
check "get nothing output" 0 "$(wc -c < "$work/none")"
"$T" query --node "$N" --customer 1 > "$work/q"; check "query rc" 0 $?
python3 -c '
import json,sys
rs=[json.loads(l) for l in open(sys.argv[1])]
ts=[r["time"] for r in rs]
sys.exit(0 if ts==sorted(ts) and all(r["customer_id"]==1 for r in rs) else 1)' "$work/q"; check "query time order" 0 $?
"$T" query --node "$N" --customer x 2>/dev/null; check "query bad customer rc" 2 $?
"$T" query --node "$N" --customer 1 --since nope 2>/dev/null; check "query bad time rc" 2 $?
"$T" customer --node "$N" --id 3 | grep -c '"customer_id":3' > "$work/c"; check "customer" 1 "$(cat "$work/c")"
"$T" customer --node "$N" --id 99 >/dev/null; check "customer none rc" 1 $?
"$T" status --node "$N" >/dev/null; check "status rc" 0 $?
"$T" status --node "$N" --json | python3 -c '
import json,sys
s=json.load(sys.stdin); n=s["nodes"][0]
assert s["schema"]==1 and s["cluster"]=="c1" and s["health"]=="healthy" and s["primary"]=="n1"
assert s["health_reason"] is None
assert n["id"]=="n1" and n["role"]=="primary" and n["last_lsn"]==110 and n["link"]=="up"
assert set(n["lag"])=={"records","bytes","seconds"}
# Verification fields (docs/OPERATIONS.md "Verification"): a standalone node has
# no other copy to compare with and no background scrubber.
assert n["verified_lsn"]==0 and n["verified_at"] is None and n["verified_age_seconds"] is None
assert n["mismatches"]=={"found":0,"first_divergent":None,"bisecting":False}
assert n["scrub"]["enabled"] is False and n["scrub"]["damaged"]==0
assert n["scrub"]["bytes_total"]==n["log_bytes"]'; check "status json" 0 $?
"$T" status --node "$work/nothing" >/dev/null 2>&1; check "status broken rc" 2 $?
"$T" append --node example.com:7000 </dev/null 2>/dev/null; check "host:port rc" 2 $?
"$T" frob 2>/dev/null; check "unknown command rc" 2 $?
"$T" get --node "$N" --frob 2>/dev/null; check "unknown option rc" 2 $?
# Streaming: the first LSN arrives while the producer still holds the pipe open.
{ sed -n 12p "$work/r.jsonl"; sleep 2; sed -n 13p "$work/r.jsonl"; } | "$T" append --node "$N" | {
    start=$(date +%s%N); read -r first; t=$(( ($(date +%s%N) - start) / 1000000 )); cat >/dev/null
    [[ $t -lt 1500 ]]; echo $?; } > "$work/stream"
check "streaming" 0 "$(cat "$work/stream")"
"$T" query --node "$N" --customer 1 > "$work/q1"
"$T" reindex "$N" >/dev/null; check "reindex rc" 0 $?
"$T" query --node "$N" --customer 1 | cmp -s - "$work/q1"; check "query after reindex" 0 $?
# tandem verify --node DIR [--deep] (docs/OPERATIONS.md "Verifying a node").
"$T" verify --node "$N" > "$work/v" 2> "$work/verr"; check "verify intact rc" 0 $?
check "verify intact" 1 "$(grep -c '^verify .*: log intact$' "$work/v")"
check "verify summary line" 1 "$(grep -c '^tandem: verify .*: intact' "$work/verr")"
"$T" verify --node "$N" --deep > "$work/v" 2>/dev/null; check "verify --deep intact rc" 0 $?
check "verify --deep index equal" 1 "$(grep -c '^index  *equal to a rebuild' "$work/v")"
flock "$N/lock" "$T" verify --node "$N" 2>"$work/err"; check "verify locked rc" 2 $?
check "verify locked one line" 1 "$(wc -l < "$work/err")"
"$T" verify --node example.com:7000 2>/dev/null; check "verify host:port rc" 2 $?
# A stale index (another node's, planted while nothing runs): --deep rebuilds it.
W=$work/w
"$T" init "$W" --cluster c1 --node n2 >/dev/null
"$T" generate --seed 8 --customers 3 --count 40 | "$T" append --node "$W" >/dev/null
cp "$W/index/data.mdb" "$N/index/data.mdb" && rm -f "$N/index/lock.mdb"
"$T" verify --node "$N" --deep > "$work/v" 2>/dev/null; check "verify --deep stale index rc" 1 $?
check "verify --deep stale index rebuilt" 1 "$(grep -c '^index .*; rebuilt$' "$work/v")"
"$T" verify --node "$N" --deep >/dev/null 2>&1; check "verify --deep after rebuild rc" 0 $?
"$T" query --node "$N" --customer 1 | cmp -s - "$work/q1"; check "query after verify rebuild" 0 $?
# A flipped byte in a sealed segment. About 84 MB of hardly compressible
# records: the first segment seals at the first batch written past 64 MiB,
# and no batch (at most 8 MiB of records) can carry the last 17 MB, so a
# second segment always follows, however appends are grouped into batches.
V=$work/v1
"$T" init "$V" --cluster c1 --node n3 >/dev/null
python3 - <<'PY' | "$T" append --node "$V" >/dev/null; check "append 84 MB rc" 0 $?
import base64, json, random, sys
r = random.Random(5)
for i in range(48000):
    sys.stdout.write(json.dumps({"type": "message", "customer_id": 1 + i % 7,
        "time": "2026-11-28T00:00:%02d.%09dZ" % (i % 60, i), "size": 100 + i,
        "destination": "delivered", "classification": "clean", "threat": "",
        "recipient": "r%d@example.net" % (i % 13), "spam_score": 0.5,
        "message_id": "<" + base64.b32encode(r.randbytes(560)).decode().lower() + "@x.example>",
        "sender": "s@example.org", "relay_ip": "203.0.113.7",
        "subject_base64": base64.b64encode(r.randbytes(990)).decode()}) + "\n")
PY
check "sealed segments" 2 "$(ls "$V/log" | grep -c '\.seg$')"
flip() { python3 -c 'import sys; p=sys.argv[1]; f=open(p,"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$@"; }
S=$V/log/00000000000000000001.seg
flip "$S" 33554432
"$T" verify --node "$V" > "$work/v" 2> "$work/verr"; check "verify sealed flip rc" 1 $?
check "verify sealed flip range" 1 \
    "$(grep -cE '^damaged +log/00000000000000000001\.seg offset [0-9]+: lsn [1-9][0-9]*\.\.[1-9][0-9]* \(sealed segment\)$' "$work/v")"
check "verify sealed flip summary" 1 "$(grep -c '^tandem: verify .*: DAMAGED: 1 range$' "$work/verr")"
flip "$S" 33554432
"$T" verify --node "$V" >/dev/null 2>&1; check "verify after flip back rc" 0 $?
rm -rf "$V"
# tandem ca and tandem init --listen: the cluster CA, node and client credentials
# (DESIGN "Public contracts"; docs/PROTOCOL.md §2).
CA=$work/pki/ca
"$T" ca "$CA" --cluster c1 >/dev/null; check "ca rc" 0 $?
check "ca file modes" "600 644" "$(stat -c %a "$CA/ca.key") $(stat -c %a "$CA/ca.crt")"
"$T" ca "$CA" --cluster c1 2>"$work/err"; check "ca twice rc" 1 $?
check "ca twice error" 1 "$(grep -c '^tandem: ca: .*already holds a CA' "$work/err")"
"$T" ca "$CA" 2>/dev/null; check "ca without --cluster/--client rc" 2 $?
"$T" ca "$CA" --cluster 'bad name' 2>/dev/null; check "ca bad cluster rc" 2 $?
"$T" ca "$CA" --client alice >/dev/null; check "ca client rc" 0 $?
check "ca client cn" "subject=O = tandem, CN = client:alice" \
    "$(openssl x509 -in "$CA/clients/alice/node.crt" -noout -subject)"
check "ca client verifies" "OK" "$(openssl verify -CAfile "$CA/ca.crt" "$CA/clients/alice/node.crt" | awk '{print $2}')"
"$T" ca "$CA" --client bob --out "$work/pki/bob" >/dev/null; check "ca client --out" 600 "$(stat -c %a "$work/pki/bob/node.key")"
"$T" ca "$CA" --client alice 2>/dev/null; check "ca client twice rc" 1 $?
R=$work/cluster
"$T" init "$R/n2" --cluster c1 --node n2 --listen 127.0.0.1:7002 --ca "$CA" \
    --peer n3=127.0.0.1:7003 --peer n1=[::1]:7001 >/dev/null; check "init --listen rc" 0 $?
check "init tls key mode" 600 "$(stat -c %a "$R/n2/tls/node.key")"
check "init tls cert verifies" "OK" "$(openssl verify -CAfile "$CA/ca.crt" "$R/n2/tls/node.crt" | awk '{print $2}')"
check "init tls cn" "subject=O = tandem, CN = n2" "$(openssl x509 -in "$R/n2/tls/node.crt" -noout -subject)"
cmp -s "$CA/ca.crt" "$R/n2/tls/ca.crt"; check "init tls ca copy" 0 $?
python3 - "$R/n2" <<'PY' ; check "init --listen tandem.conf" 0 $?
import configparser, os, sys
c = configparser.ConfigParser(); c.read(os.path.join(sys.argv[1], "tandem.conf"))
r = c["replication"]
assert c["node"]["cluster"] == "c1" and c["node"]["id"] == "n2"
assert r["primary"] == "n1", r["primary"]          # first id in sorted order
assert r["listen"] == "127.0.0.1:7002"
assert r["peer.n3"] == "127.0.0.1:7003" and r["peer.n1"] == "[::1]:7001"
assert r["min_copies"] == "2" and r["write_deadline_ms"] == "10000"
for k in ("tls_key", "tls_cert", "tls_ca"):
    assert os.path.isfile(os.path.join(sys.argv[1], r[k])), k
PY
"$T" init "$R/n3" --cluster c1 --node n3 --listen 127.0.0.1:7003 --ca "$CA" \
    --peer n1=[::1]:7001 --peer n2=127.0.0.1:7002 --primary n3 >/dev/null; check "init --primary rc" 0 $?
check "init --primary" "primary = n3" "$(grep '^primary' "$R/n3/tandem.conf")"
# A replicated node without its tandemd: unreachable (exit 2, role "stopped"),
# and it refuses writes (written there they would be on one node only).
"$T" status --node "$R/n2" >/dev/null; check "status of a stopped replicated node rc" 2 $?
check "status of a stopped replicated node role" stopped "$("$T" status --node "$R/n2" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["role"])')"
head -1 "$work/r.jsonl" | "$T" append --node "$R/n2" >"$work/out" 2>"$work/err"
check "append to a stopped replicated node rc" 1 $?
check "append to a stopped replicated node prints no lsn" 0 "$(wc -c < "$work/out")"
check "append to a stopped replicated node says why" 1 "$(grep -c 'no tandemd runs there' "$work/err")"
check "append to a stopped replicated node writes nothing" 0 "$("$T" status --node "$R/n2" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["last_lsn"])')"
bad() { # bad DESCRIPTION EXPECTED_RC ARGS...: refused with one line, nothing created
    local what=$1 want=$2; shift 2
    "$T" init "$R/bad" --cluster c1 --node n9 "$@" >/dev/null 2>"$work/err"
    check "init $what rc" "$want" $?
    check "init $what one line" 1 "$(wc -l < "$work/err")"
    [[ ! -e "$R/bad" ]]; check "init $what creates nothing" 0 $?
}
bad "bad listen port" 2 --listen 127.0.0.1:70000 --ca "$CA"
bad "bad listen host" 2 --listen 'a b:7000' --ca "$CA"
bad "bad peer address" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer n1=nohostport
bad "peer without id" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer =127.0.0.1:1
bad "duplicate peer" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer n1=h:1 --peer n1=h:2
bad "peer is self" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer n9=h:1
bad "unknown primary" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer n1=h:1 --primary n7
bad "missing CA" 2 --listen 127.0.0.1:7009 --ca "$work/pki/none" --peer n1=h:1
bad "CA of another cluster" 2 --listen 127.0.0.1:7009 --ca "$CA" --peer n1=h:1 --cluster c2
bad "listen without ca" 2 --listen 127.0.0.1:7009
bad "peer without listen" 2 --peer n1=h:1
bad "relative index dir" 2 --index-dir rel/index

# --index-dir PATH: the index on another file system, DIR/index a link to it.
I=$work/idx
"$T" init "$work/xi" --cluster c1 --node n1 --index-dir "$I/n1" >/dev/null; check "init --index-dir rc" 0 $?
check "init --index-dir links DIR/index" "$I/n1" "$(readlink "$work/xi/index")"
check "init --index-dir holds the index" 1 "$(ls "$I/n1" | grep -c '^data.mdb$')"
"$T" append --node "$work/xi" < "$work/r.jsonl" >/dev/null; check "index dir: append rc" 0 $?
check "index dir: get" 1 "$("$T" get --node "$work/xi" --message-id "$mid" | grep -c '"lsn":50,')"
"$T" reindex "$work/xi" >/dev/null; check "index dir: reindex rc" 0 $?
check "index dir: still a link after reindex" "$I/n1" "$(readlink "$work/xi/index")"
"$T" verify --node "$work/xi" --deep > "$work/v" 2>/dev/null; check "index dir: verify --deep rc" 0 $?
check "index dir: verify --deep equal" 1 "$(grep -c '^index       equal to a rebuild' "$work/v")"
# The index's file system gone (the link dangles): one line naming the link and
# its target, nothing changed; without the link the index is rebuilt in DIR.
mv "$I/n1" "$I/n1.away"
"$T" get --node "$work/xi" --message-id "$mid" > /dev/null 2>"$work/err"; check "index dir gone: get rc" 1 $?
check "index dir gone: says why" 1 "$(grep -c "index: $work/xi/index is a link to $I/n1, which does not exist" "$work/err")"
check "index dir gone: one line" 1 "$(wc -l < "$work/err")"
rm "$work/xi/index"
"$T" reindex "$work/xi" >/dev/null; check "index dir removed: reindex rc" 0 $?
check "index dir removed: rebuilt from the log" 1 "$("$T" get --node "$work/xi" --message-id "$mid" | grep -c '"lsn":50,')"
[[ -d "$work/xi/index" && ! -L "$work/xi/index" ]]; check "index dir removed: index back in DIR" 0 $?
mv "$I/n1.away" "$I/n1"
"$T" init "$work/xj" --cluster c1 --node n2 --index-dir "$I/n1" >/dev/null 2>"$work/err"
check "init --index-dir not empty rc" 1 $?
check "init --index-dir not empty says why" 1 "$(grep -c "^tandem: init: --index-dir $I/n1 is not an empty directory" "$work/err")"
# An init interrupted after its link: the same --index-dir goes on, another is refused.
mkdir -p "$work/xk" "$I/n3" && ln -s "$I/n3" "$work/xk/index" && touch "$I/n3/data.mdb.partial"
"$T" init "$work/xk" --cluster c1 --node n3 --index-dir "$I/n4" >/dev/null 2>"$work/err"
check "init --index-dir other link rc" 1 $?
check "init --index-dir other link says why" 1 "$(grep -c "is a link to $I/n3, not to --index-dir $I/n4" "$work/err")"
rm "$I/n3/data.mdb.partial"
"$T" init "$work/xk" --cluster c1 --node n3 --index-dir "$I/n3" >/dev/null; check "init --index-dir again rc" 0 $?
# Two node directories never share one index: a copy (cp -a copies the link)
# is refused, naming the owner; a moved directory takes its index along.
head -5 "$work/r.jsonl" | "$T" append --node "$work/xk" >/dev/null; check "index dir: first writer claims it" "$(realpath "$work/xk")" "$(cat "$I/n3/node-dir")"
cp -a "$work/xk" "$work/xk-copy"
head -1 "$work/r.jsonl" | "$T" append --node "$work/xk-copy" >/dev/null 2>"$work/err"; check "index dir: copy refused rc" 1 $?
check "index dir: copy refused says why" 1 "$(grep -c "links to $I/n3, the index of node directory $(realpath "$work/xk") (a copy of it?)" "$work/err")"
check "index dir: copy refused one line" 1 "$(wc -l < "$work/err")"
"$T" get --node "$work/xk-copy" --message-id "$mid" >/dev/null 2>"$work/err"; check "index dir: copy refused to a reader rc" 1 $?
check "index dir: copy refused to a reader says why" 1 "$(grep -c "the index of node directory $(realpath "$work/xk")" "$work/err")"
mv "$work/xk" "$work/xk-moved"
head -1 "$work/r.jsonl" | "$T" append --node "$work/xk-moved" >/dev/null; check "index dir: moved directory rc" 0 $?
check "index dir: moved directory claims it" "$(realpath "$work/xk-moved")" "$(cat "$I/n3/node-dir")"
rm "$work/xk-copy/index"
head -1 "$work/r.jsonl" | "$T" append --node "$work/xk-copy" >/dev/null; check "index dir: copy without the link rc" 0 $?
check "index dir: the copy's own index" 6 "$("$T" status --node "$work/xk-copy" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["index_lsn"])')"
"$T" init "$work/xl" --cluster c1 --node n4 >/dev/null
rm "$work/xl/tandem.conf"
"$T" init "$work/xl" --cluster c1 --node n4 --index-dir "$I/n5" >/dev/null 2>"$work/err"
check "init --index-dir over an index dir rc" 1 $?
check "init --index-dir over an index dir says why" 1 "$(grep -c "index exists: the index is already in DIR" "$work/err")"
exit $fail
