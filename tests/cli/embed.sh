#!/usr/bin/env bash
# tests/cli/embed.sh: the example of an application that embeds a node
# (docs/examples/embed.c, linked against libtandem) tells the truth.
# Usage: embed.sh TANDEM EMBED
#
# Proves, with node directories made by the tandem CLI as an operator would:
# - a standalone node run inside the example serves its local socket: the
#   example's appends are acknowledged and its reads find them; afterwards
#   (the node stopped: no socket left, the lock released) the CLI reads the
#   same records from the directory;
# - a 2-node cluster (its CA from `tandem ca`, min_copies 2) run as two
#   tandem_server instances in one process: appends on the first node's socket
#   are acknowledged at min_copies and found in both nodes' own copies; the
#   CLI then finds every record in both directories, at the same LSNs;
# - a node directory without tandem.conf: the example fails (exit 1) with one
#   line naming the file.
# Every process started here is killed in teardown.
set -uo pipefail
T=$1
E=$2
. "$(dirname "$0")/lib.sh"
# Run the example in the background, bounded to 60 s; sets rc.
run_embed() { # run_embed NAME DIR...
    local name=$1
    shift
    timeout -s KILL 60 "$E" "$@" > "$work/$name.out" 2> "$work/$name.err" &
    local pid=$!
    pids+=("$pid")
    wait "$pid"
    rc=$?
    sed 's/^/     /' "$work/$name.out"
    [[ $rc -eq 0 ]] || sed 's/^/     stderr: /' "$work/$name.err"
}

# A standalone node.
S=$work/solo
"$T" init "$S" --cluster c1 --node solo > /dev/null; check "init standalone" 0 $?
run_embed solo "$S"
check "standalone example rc" 0 "$rc"
check "standalone: every mail in its copy" 1 "$(grep -c '^node solo: the login and every mail' "$work/solo.out")"
check "standalone: socket removed" 1 "$([[ -e "$S/tandemd.sock" ]]; echo $?)"
"$T" query --node "$S" --customer 7 > "$work/solo.q"; check "standalone: CLI query rc" 0 $?
check "standalone: CLI finds every mail" 20 "$(wc -l < "$work/solo.q")"
"$T" customer --node "$S" --id 7 > /dev/null; check "standalone: CLI finds the customer" 0 $?

# A 2-node cluster in one process.
read -r p1 p2 < <(free_ports 2)
"$T" ca "$work/ca" --cluster c2 > /dev/null; check "ca" 0 $?
"$T" init "$work/n1" --cluster c2 --node n1 --listen "127.0.0.1:$p1" --ca "$work/ca" \
    --peer "n2=127.0.0.1:$p2" > /dev/null; check "init n1" 0 $?
"$T" init "$work/n2" --cluster c2 --node n2 --listen "127.0.0.1:$p2" --ca "$work/ca" \
    --peer "n1=127.0.0.1:$p1" > /dev/null; check "init n2" 0 $?
check "min_copies is 2" 2 "$(cat "$work/n1/tandem.conf" "$work/n2/tandem.conf" | grep -c '^min_copies = 2')"
run_embed cluster "$work/n1" "$work/n2"
check "cluster example rc" 0 "$rc"
check "cluster: both nodes report min_copies 2" 2 "$(grep -c 'min_copies 2)' "$work/cluster.out")"
check "cluster: every mail in both copies" 2 "$(grep -c 'the login and every mail are in its copy' "$work/cluster.out")"
for n in n1 n2; do
    check "cluster $n: socket removed" 1 "$([[ -e "$work/$n/tandemd.sock" ]]; echo $?)"
    "$T" query --node "$work/$n" --customer 7 > "$work/$n.q"; check "cluster $n: CLI query rc" 0 $?
    check "cluster $n: CLI finds every mail" 20 "$(wc -l < "$work/$n.q")"
done
check "cluster: both copies hold the same records at the same LSNs" \
    "$(md5sum < "$work/n1.q")" "$(md5sum < "$work/n2.q")"

# No tandem.conf: one line naming it, exit 1.
mkdir -p "$work/empty"
run_embed empty "$work/empty"
check "no tandem.conf: rc" 1 "$rc"
check "no tandem.conf: one line" 1 "$(wc -l < "$work/empty.err")"
check "no tandem.conf: names the file" 1 "$(grep -c 'empty/tandem.conf: No such file' "$work/empty.err")"

exit $fail
