# tests/cli/lib.sh: what the shell tests share; sourced (not run) by
# tests/cli/*.sh and tests/loopback/test_tandemd.sh after they set T (tandem)
# and, where they start nodes, D (tandemd):
# - $work, a fresh temporary directory, removed at exit, after every pid in
#   pids has been killed;
# - fail (0 until a check fails) and check DESCRIPTION EXPECTED ACTUAL;
# - free_ports N: N free TCP ports of 127.0.0.1 on one line;
# - start DIR NAME: tandemd on DIR (stderr appended to $work/NAME.err), its
#   pid in pids and in pid_NAME; returns once DIR/tandemd.sock exists (10 s
#   at most, else FAIL and exit 1);
# - init_pair NAME1 PORT1 NAME2 PORT2: two nodes of one cluster;
# - until_status NODE CONDITION: waits (30 s at most, else FAIL and 1) until
#   CONDITION, python over the status document s of NODE (nodes: its nodes by
#   id; me: the node's own), holds.
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fail=1; fi
}
free_ports() { # free_ports N
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
start() { # start DIR NAME
    "$D" "$1" 2>> "$work/$2.err" &
    local p=$!
    pids+=("$p")
    eval "pid_$2=$p"
    for _ in $(seq 200); do [[ -S "$1/tandemd.sock" ]] && return 0; sleep 0.05; done
    echo "FAIL tandemd $2 did not start"; cat "$work/$2.err"; exit 1
}
init_pair() { # init_pair NAME1 PORT1 NAME2 PORT2: nodes $work/NAME1, $work/NAME2 of cluster c1 (CA $CA), each the other's peer
    "$T" init "$work/$1" --cluster c1 --node "$1" --listen "127.0.0.1:$2" --ca "$CA" --peer "$3=127.0.0.1:$4" >/dev/null
    "$T" init "$work/$3" --cluster c1 --node "$3" --listen "127.0.0.1:$4" --ca "$CA" --peer "$1=127.0.0.1:$2" >/dev/null
}
until_status() { # until_status NODE PYTHON_CONDITION
    for _ in $(seq 300); do
        "$T" status --node "$1" --json > "$work/s.json" 2>/dev/null
        python3 - "$work/s.json" "$2" <<'PY' && return 0
import json, sys
s = json.load(open(sys.argv[1]))
nodes = {n["id"]: n for n in s["nodes"]}
me = [n for n in s["nodes"] if n["self"]][0]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
        sleep 0.1
    done
    echo "FAIL waited for: $2"; cat "$work/s.json"; echo; return 1
}
