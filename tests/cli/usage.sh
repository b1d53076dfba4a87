#!/usr/bin/env bash
# tests/cli/usage.sh: every command-line and configuration mistake an operator
# can make gets exit status 2 (bad usage) or 1 (failure) and exactly one line
# on stderr, "tandem: ..." or "tandemd: ...", naming the cause; nothing goes to
# stdout, and no node directory is created or changed (DESIGN "Public
# contracts", STANDARDS "Bad input"). Also: tandem --help, help COMMAND and
# COMMAND --help print each command's usage.
# Usage: usage.sh TANDEM TANDEMD
set -uo pipefail
T=$1
D=$2
unset TANDEM_CERT
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fail=1; fi
}

# refuse RC PREFIX TEXT PROGRAM ARG...: PROGRAM exits RC with nothing on stdout
# and one stderr line that starts with PREFIX and contains TEXT.
refuse() {
    local rc=$1 prefix=$2 text=$3
    shift 3
    "$@" >"$work/out" 2>"$work/err" </dev/null
    local got=$?
    local what="${*:2}"
    check "[$what] rc" "$rc" "$got"
    check "[$what] stdout empty" 0 "$(wc -c <"$work/out")"
    check "[$what] one stderr line" 1 "$(wc -l <"$work/err")"
    local line
    line=$(head -1 "$work/err")
    if [[ "$line" != "$prefix"* || "$line" != *"$text"* ]]; then
        echo "FAIL [$what] stderr: expected [$prefix...$text...] got [$line]"
        fail=1
    fi
}

# fingerprint DIR: every file under DIR with its checksum, and every directory
# (not LMDB's lock.mdb, its table of readers, which every open writes).
fingerprint() {
    (cd "$1" && find . -type d | sort && find . -type f ! -name '*.lock' ! -name lock.mdb -print0 | sort -z | xargs -0 md5sum)
}

N=$work/node
"$T" init "$N" --cluster c1 --node n1 >/dev/null || { echo "FAIL init"; exit 1; }
"$T" generate --seed 3 --customers 2 --count 20 | "$T" append --node "$N" >/dev/null ||
    { echo "FAIL append"; exit 1; }
"$T" ca "$work/ca" --cluster c1 >/dev/null || { echo "FAIL ca"; exit 1; }
before=$(fingerprint "$N")

# ---- tandem: commands, help, option syntax
refuse 2 "tandem: " "missing command (see tandem --help)" "$T"
refuse 2 "tandem: " "unknown command 'frob'" "$T" frob
refuse 2 "tandem: " "help: expected one command name, got 2 arguments" "$T" help get query
refuse 2 "tandem: " "help: unknown command 'frob'" "$T" help frob
refuse 2 "tandem: " "status: --json takes no value" "$T" status --json=yes --node "$N"
refuse 2 "tandem: " "status: --node needs a value" "$T" status --node
refuse 2 "tandem: " "get: unknown option '--frob' (see tandem help get)" "$T" get --node "$N" --frob
for args in --help -h help; do
    "$T" $args >"$work/out" 2>"$work/err"
    check "tandem $args rc" 0 $?
    check "tandem $args lists commands" 1 "$(grep -c '^commands:$' "$work/out")"
done
commands=$("$T" --help | sed -n '/^commands:$/,/^$/p' | awk 'NF >= 2 { print $1 }')
check "commands listed" 15 "$(wc -w <<<"$commands")"
for c in $commands; do
    [[ $c == help ]] && continue
    "$T" help "$c" >"$work/out" 2>"$work/err"
    check "help $c rc" 0 $?
    check "help $c usage" 1 "$(head -1 "$work/out" | grep -c "^usage: tandem $c ")"
    "$T" "$c" --help >"$work/out2" 2>&1
    check "$c --help rc" 0 $?
    check "$c --help = help $c" "$(md5sum <"$work/out")" "$(md5sum <"$work/out2")"
done

# ---- tandem ca, generate
refuse 2 "tandem: " "ca: missing CADIR (see tandem help ca)" "$T" ca
refuse 2 "tandem: " "ca: --client 'bad id': use 1-63 letters" "$T" ca "$work/ca" --client 'bad id'
refuse 2 "tandem: " "ca: --out goes with --client" "$T" ca "$work/ca2" --cluster c1 --out "$work/x"
refuse 2 "tandem: " "ca: give exactly one of --cluster NAME or --client NAME" "$T" ca "$work/ca" --out "$work/x"
refuse 2 "tandem: " "generate: --seed 'x': not a number" "$T" generate --seed x
refuse 2 "tandem: " "generate: --count 'y': not a number" "$T" generate --count y
refuse 2 "tandem: " "generate: --customers '0': not a number from 1 to" "$T" generate --customers 0
check "ca: nothing created" "no no" "$([[ -e $work/ca2 ]] && echo yes || echo no) $([[ -e $work/x ]] && echo yes || echo no)"

# ---- tandem init: nothing is created when it refuses
M=$work/new
refuse 2 "tandem: " "init: missing DIR (see tandem help init)" "$T" init
refuse 2 "tandem: " "init: --cluster NAME and --node ID are required" "$T" init "$M"
refuse 2 "tandem: " "init: --node 'a b': use 1-63 letters" "$T" init "$M" --cluster c1 --node 'a b'
refuse 2 "tandem: " "init: --cluster 'c/1': use 1-63 letters" "$T" init "$M" --cluster c/1 --node n1
refuse 2 "tandem: " "init: --primary n2: a standalone node is its own primary" \
    "$T" init "$M" --cluster c1 --node n1 --primary n2
refuse 2 "tandem: " "init: --peer needs --listen HOST:PORT" "$T" init "$M" --cluster c1 --node n1 --peer n2=127.0.0.1:1
refuse 2 "tandem: " "init: --peer 'b d=127.0.0.1:1': id: use 1-63 letters" \
    "$T" init "$M" --cluster c1 --node n1 --listen 127.0.0.1:7000 --ca "$work/ca" --peer 'b d=127.0.0.1:1'
peers=()
for i in 2 3 4 5 6 7 8 9; do peers+=(--peer "n$i=127.0.0.1:$((7000 + i))"); done
refuse 2 "tandem: " "init: more than 7 --peer: a cluster has at most 8 nodes" \
    "$T" init "$M" --cluster c1 --node n1 --listen 127.0.0.1:7000 --ca "$work/ca" "${peers[@]}"
refuse 2 "tandem: " "init: --ca $work/nope: no CA there" \
    "$T" init "$M" --cluster c1 --node n1 --listen 127.0.0.1:7000 --peer n2=127.0.0.1:1 --ca "$work/nope"
check "init: nothing created" no "$([[ -e $M ]] && echo yes || echo no)"
refuse 1 "tandem: " "init: $N/tandem.conf exists: $N is already node 'n1' of cluster 'c1'" \
    "$T" init "$N" --cluster c1 --node n2
# A failure after DIR was made leaves at most an empty DIR, and init can run again.
refuse 1 "tandem: " "init: --index-dir $N/tandem.conf/x: create: Not a directory" \
    "$T" init "$M" --cluster c1 --node n1 --index-dir "$N/tandem.conf/x"
check "init: failed init left DIR empty" "" "$(ls -A "$M" 2>/dev/null)"
"$T" init "$M" --cluster c1 --node n1 >/dev/null
check "init: runs again after a failure" 0 $?

# ---- tandem reindex, get, query, customer, status on a node directory
refuse 2 "tandem: " "reindex: missing DIR (see tandem help reindex)" "$T" reindex
refuse 1 "tandem: " "reindex $work/nothing: not a tandem directory" "$T" reindex "$work/nothing"
refuse 2 "tandem: " "query: --customer N is required" "$T" query --node "$N"
refuse 2 "tandem: " "query: empty time window: --since must be before --until" \
    "$T" query --node "$N" --customer 1 --since 2026-01-02T00:00:00Z --until 2026-01-01T00:00:00Z
long=$(printf 'a%.0s' $(seq 1 400))
refuse 2 "tandem: " "query: --recipient: 400 bytes, limit 320" "$T" query --node "$N" --customer 1 --recipient "$long"
refuse 2 "tandem: " "get: --message-id: empty" "$T" get --node "$N" --message-id ''
long=$(printf 'm%.0s' $(seq 1 1000))
refuse 2 "tandem: " "get: --message-id: 1000 bytes, limit 998" "$T" get --node "$N" --message-id "$long"
refuse 2 "tandem: " "customer: give exactly one of --id N, --username U, --email E" "$T" customer --node "$N"
refuse 2 "tandem: " "customer: give exactly one of --id N, --username U, --email E" \
    "$T" customer --node "$N" --id 1 --email a@b
refuse 2 "tandem: " "customer: --id '-1': not a customer id (0 to 4294967295)" "$T" customer --node "$N" --id -1
refuse 1 "tandem: " "open $work/nothing: not a tandem directory" "$T" get --node "$work/nothing" --message-id x
check "no directory created by a refused read" no "$([[ -e $work/nothing ]] && echo yes || echo no)"

# ---- tandemd: usage and tandem.conf mistakes
"$D" >"$work/out" 2>"$work/err"
check "tandemd without DIR rc" 2 $?
check "tandemd without DIR usage" "usage: tandemd DIR" "$(head -1 "$work/err")"
check "tandemd without DIR stdout empty" 0 "$(wc -c <"$work/out")"
refuse 1 "tandemd: " "$work/nothing/tandem.conf: No such file or directory (create the node with tandem init)" \
    "$D" "$work/nothing"
conf_case() { # conf_case TEXT SED-EXPRESSION...: a copy of the node whose tandem.conf is edited
    rm -rf "$work/c"
    cp -a "$N" "$work/c"
    local e
    for e in "$@"; do sed -i "$e" "$work/c/tandem.conf"; done
}
conf_case '$a [log]\nsegment_size = banana'
refuse 1 "tandemd: " "tandem.conf: line 18: bad value: [log] segment_size = banana" "$D" "$work/c"
conf_case '$a this line is neither'
refuse 1 "tandemd: " "tandem.conf: line 17: neither [section] nor key = value" "$D" "$work/c"
refuse 1 "tandem: " "quarantine: $work/c: tandem.conf: line 17: neither [section] nor key = value" \
    "$T" quarantine --node "$work/c"
conf_case 's/^min_copies = .*/min_copies = two/'
refuse 1 "tandem: " "history: $work/c: tandem.conf: line 14: bad value: [replication] min_copies = two" \
    "$T" history --node "$work/c"
refuse 1 "tandem: " "init: $work/c/tandem.conf exists and cannot be read: tandem.conf: line 14: bad value" \
    "$T" init "$work/c" --cluster c1 --node n1
conf_case '/^id = /d'
refuse 1 "tandemd: " "tandem.conf: [node] cluster and id are required" "$D" "$work/c"
conf_case 's/^min_copies = .*/min_copies = many/'
refuse 1 "tandemd: " "bad value: [replication] min_copies = many" "$D" "$work/c"
conf_case '/^\[replication\]/a peer.n2 = 127.0.0.1:7002'
refuse 1 "tandemd: " "tandem.conf: [replication] listen is required with peers" "$D" "$work/c"
conf_case '/^\[replication\]/a listen = 127.0.0.1:7001' \
    '/^\[replication\]/a peer.n2 = 127.0.0.1:7002\npeer.n3 = 127.0.0.1:7003\npeer.n4 = 127.0.0.1:7004\npeer.n5 = 127.0.0.1:7005\npeer.n6 = 127.0.0.1:7006\npeer.n7 = 127.0.0.1:7007\npeer.n8 = 127.0.0.1:7008\npeer.n9 = 127.0.0.1:7009'
refuse 1 "tandemd: " "tandem.conf: more than 7 peers: a cluster has at most 8 nodes" "$D" "$work/c"

# A replicated node: addresses that do not parse or resolve, a port in use.
R=$work/r
"$T" init "$R" --cluster c1 --node n1 --listen 127.0.0.1:7001 --peer n2=127.0.0.1:7002 --ca "$work/ca" >/dev/null ||
    { echo "FAIL init replicated"; exit 1; }
repl_case() { # repl_case SED-EXPRESSION: a copy of R whose tandem.conf is edited
    rm -rf "$work/c"
    cp -a "$R" "$work/c"
    sed -i "$1" "$work/c/tandem.conf"
}
repl_case 's/^listen = .*/listen = 127.0.0.1/'
refuse 1 "tandemd: " "tandem.conf: [replication] listen '127.0.0.1': expected HOST:PORT" "$D" "$work/c"
repl_case 's/^listen = .*/listen = [::1/'
refuse 1 "tandemd: " "tandem.conf: [replication] listen '[::1': expected HOST:PORT" "$D" "$work/c"
repl_case 's/^peer.n2 = .*/peer.n2 = 127.0.0.1:99999/'
refuse 1 "tandemd: " "tandem.conf: [replication] peer '127.0.0.1:99999': expected HOST:PORT" "$D" "$work/c"
repl_case 's/^listen = .*/listen = nosuchhost.invalid:7001/'
refuse 1 "tandemd: " "tandem.conf: [replication] listen 'nosuchhost.invalid:7001': " "$D" "$work/c"
# TLS files that are not what tandem.conf says they are.
repl_case 's|^tls_cert = .*|tls_cert = tandem.conf|'
refuse 1 "tandemd: " "load certificate $work/c/tandem.conf: not a PEM certificate" "$D" "$work/c"
repl_case 's|^tls_key = .*|tls_key = tandem.conf|'
refuse 1 "tandemd: " "load key $work/c/tandem.conf: not a PEM private key" "$D" "$work/c"
repl_case 's|^tls_ca = .*|tls_ca = tandem.conf|'
refuse 1 "tandemd: " "load CA $work/c/tandem.conf: not a PEM certificate" "$D" "$work/c"
repl_case 's|^tls_key = .*|tls_key = nothere.key|'
refuse 1 "tandemd: " "open key $work/c/nothere.key: No such file or directory" "$D" "$work/c"
"$T" init "$work/r2" --cluster c1 --node n2 --listen 127.0.0.1:7002 --peer n1=127.0.0.1:7001 --ca "$work/ca" >/dev/null
repl_case "s|^tls_key = .*|tls_key = $work/r2/tls/node.key|"
refuse 1 "tandemd: " "key $work/r2/tls/node.key does not match certificate $work/c/tls/node.crt" "$D" "$work/c"
# A CA directory whose files are not a tandem CA.
mkdir -p "$work/badca"
echo junk >"$work/badca/ca.crt"
echo junk >"$work/badca/ca.key"
refuse 1 "tandem: " "ca: $work/badca/ca.crt: not a PEM certificate" "$T" ca "$work/badca" --client me
refuse 1 "tandem: " "init: --ca $work/badca: $work/badca/ca.crt: not a PEM certificate" \
    "$T" init "$work/new2" --cluster c1 --node n1 --listen 127.0.0.1:7000 --peer n2=127.0.0.1:1 --ca "$work/badca"
check "ca, init: nothing created" "no no" \
    "$([[ -e $work/badca/clients ]] && echo yes || echo no) $([[ -e $work/new2 ]] && echo yes || echo no)"
# The listen port is taken: the last stderr line says so (trace lines may come first).
repl_case 's/^listen = .*/listen = 127.0.0.1:PORT/'
python3 - "$D" "$work/c" >"$work/taken" 2>&1 <<'PY'
import socket, subprocess, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
port = s.getsockname()[1]
conf = sys.argv[2] + "/tandem.conf"
text = open(conf).read().replace("PORT", str(port))
open(conf, "w").write(text)
p = subprocess.run(["timeout", "20", sys.argv[1], sys.argv[2]], capture_output=True, text=True)
last = p.stderr.strip().split("\n")[-1]
print(p.returncode, "ok" if last == "tandemd: listen on 127.0.0.1:%d: address already in use" % port else last)
PY
check "tandemd: listen port taken" "1 ok" "$(cat "$work/taken")"

# Output that cannot be written (a full disk: /dev/full) is a failure that
# says so, never a silent success: exit 1 (status: 2, it has no answer).
full() { # full RC ARG...
    local rc=$1
    shift
    "$T" "$@" >/dev/full 2>"$work/err" </dev/null
    check "[$* >/dev/full] rc" "$rc" $?
    check "[$* >/dev/full] says so" "tandem: $1: write to stdout failed" "$(tail -1 "$work/err")"
}
cust=$("$T" generate --seed 3 --customers 2 --count 20 | sed -n 1p | python3 -c 'import json,sys; print(json.load(sys.stdin)["customer_id"])')
mid=$("$T" generate --seed 3 --customers 2 --count 20 | sed -n '$p' | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])')
full 1 generate --count 3
full 1 query --node "$N" --customer "$cust"
full 1 get --node "$N" --message-id "$mid"
full 1 customer --node "$N" --id "$cust"
full 2 status --node "$N"
full 2 status --node "$N" --json
full 1 quarantine --node "$N"
full 1 quarantine --node "$N" --json
full 1 verify --node "$N"
full 1 help
full 1 help status
"$T" init "$work/a" --cluster c1 --node n1 >/dev/null
"$T" generate --count 2 >"$work/two.jsonl"
"$T" append --node "$work/a" <"$work/two.jsonl" >/dev/full 2>"$work/err"
check "[append >/dev/full] rc" 1 $?
check "[append >/dev/full] says so" "tandem: append: write to stdout failed" "$(tail -1 "$work/err")"

# A line longer than append takes: the lines before it are stored, then the
# first bad line rule (DESIGN "Public contracts").
{
    "$T" generate --seed 4 --count 2 | head -3
    python3 -c 'print("{\"type\":\"message\",\"subject\":\"" + "x" * 1100000 + "\"}")'
    "$T" generate --seed 5 --count 1 | tail -1
} >"$work/long.jsonl"
"$T" append --node "$work/a" <"$work/long.jsonl" >"$work/out" 2>"$work/err"
check "[append a 1.1 MB line] rc" 1 $?
check "[append a 1.1 MB line] the lines before it stored" 3 "$(wc -l <"$work/out")"
check "[append a 1.1 MB line] names the line and the limit" "tandem: line 4: longer than 1048576 bytes" \
    "$(cat "$work/err")"

check "the node is unchanged" "$before" "$(fingerprint "$N")"
"$T" status --node "$N" >/dev/null
check "the node is healthy" 0 $?
exit $fail
