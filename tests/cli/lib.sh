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
#   id; me: the node's own), holds;
# - flip FILE OFFSET: xor the byte at OFFSET with 1;
# - batch_body_middle SEGMENT CONDITION: the offset of the middle of the body
#   of the first batch of SEGMENT for which CONDITION, python over offset,
#   end, lsn_first and count, holds (docs/FORMAT.md "Segment": a 64-byte
#   header, then batches of a 96-byte header, lsn_first at 16, record_count
#   at 24, body_size at 28, and the body); nothing if none does.
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
flip() { # flip FILE OFFSET
    python3 -c 'import sys; p=sys.argv[1]; f=open(p,"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$@"
}
batch_body_middle() { # batch_body_middle SEGMENT PYTHON_CONDITION
    python3 - "$1" "$2" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb")
offset = 64
while True:
    f.seek(offset)
    header = f.read(96)
    if header[:4] != b"BTCH":
        break
    lsn_first, count = struct.unpack_from("<QI", header, 16)
    end = offset + 96 + struct.unpack_from("<I", header, 28)[0]
    if eval(sys.argv[2]):
        print(offset + 96 + (end - offset - 96) // 2)
        break
    offset = end
PY
}
