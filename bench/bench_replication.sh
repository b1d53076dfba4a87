#!/usr/bin/env bash
# bench/bench_replication.sh: the replication benchmark, in one run.
#
# Question: how many records per second does tandem acknowledge, and at what
# latency, when every write must be durable on min_copies=2 nodes over TLS on
# loopback, beside the same engine with no backup, and beside PostgreSQL 15
# with one synchronous streaming standby? How far behind are the backups?
#
# Happy path:
# 1. Check the binaries of BUILD_DIR (default build/; this script builds
#    nothing): tools/tandem, tools/tandemd, bench/bench_cluster. Make a work
#    directory, a cluster CA (`tandem ca CADIR --cluster bench`) and a client
#    certificate (`tandem ca CADIR --client bench`).
# 2. For each configuration, in fresh node directories with free ports on
#    127.0.0.1 (DESIGN "Public contracts": tandem init --listen --ca --peer
#    --primary):
#      solo     n1 alone, min_copies=1: the engine with no backup, reached
#               through the same TLS client path;
#      backup1  n1 primary + n2, min_copies=2;
#      backup2  n1 primary + n2 + n3, min_copies=2.
#    Start one tandemd per node, wait until `tandem status --node n1 --json`
#    says healthy with every node's link up, then run bench_cluster against n1
#    with 1, 16 and 64 appenders of one record per call (each its own thread
#    and connection), 64 sharing one connection (--shared), 64 as chains of
#    asynchronous calls on one connection (--async: pgbench's way of driving
#    its clients), and one appender of --batch records per call. During each
#    run bench_cluster samples n1's status document every 100 ms over a
#    client of its own (--status-file; a `tandem status --json` process per
#    sample cost 5-15% of the throughput and raised p99); the backups'
#    lag.seconds and lag.records of those samples give the replication lag
#    p50/p99. Stop the daemons (SIGTERM: they
#    exit 0 within seconds, DESIGN). Each tandemd traces, as its node closes,
#    the bytes it sent to other nodes and how many of them were verification
#    frames (CHECK, CHECK_RESULT): their sum over the configuration's daemons
#    gives the verification share of replication traffic (issue 5: at most 2%).
# 3. Run bench/pg_standby.sh (PostgreSQL 15, one synchronous standby, 32 and
#    64 clients).
# 4. Print a table and RESULT lines (docs/BENCHMARKS.md): every tandem figure
#    beside the no-backup engine's (tandem_over_solo) and beside PostgreSQL
#    with 64 clients (tandem_over_pg64), and whether the target holds (at
#    min_copies=2 with 64 appenders, at least 20 times PostgreSQL's inserts
#    per second with 64 clients).
#
# Failure modes: a missing binary or tool, a daemon that exits or a cluster
# that is not healthy within 60 s, a failed bench_cluster or pg_standby.sh run:
# one line on stderr ("bench_replication: ..."), with the tails of the
# daemons' logs, exit status 1. Bad usage: exit status 2.
#
# Close: a trap on EXIT stops every tandemd started here (by
# process id) and a running pg_standby.sh (which stops its servers), then
# removes the work directory, unless --keep or a failure (kept for its logs;
# an interrupt removes it).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/bench_replication.sh [BUILD_DIR] [--seconds S] [--warmup S]
           [--appenders LIST] [--shared LIST] [--async LIST] [--batch K] [--configs LIST]
           [--pg-seconds S]
           [--pg-clients LIST] [--skip-pg] [--skip-tandem] [--dir DIR] [--keep]
           [--index-dir DIR]

BUILD_DIR (default build/) must hold tools/tandem, tools/tandemd and
bench/bench_cluster; nothing is built.
  --seconds S        measured seconds of each tandem run (default 10)
  --warmup S         warm-up before each tandem run (default 1)
  --appenders LIST   appender counts, one record per call, each appender with
                     its own connection (default 1,16,64)
  --shared LIST      appender counts, one record per call, all appenders
                     sharing one client connection (default 64; 0 skips)
  --async LIST       appender counts, one record per call, all appenders on
                     one client and no thread of their own: each is a chain
                     of tandem_client_append_async() calls, one in flight at
                     a time, run from the client's callbacks, as pgbench
                     drives its clients from a few threads (default 64; 0
                     skips)
  --shared-batch K   records per call of a run of 64 appenders sharing one
                     client (default 16; 0 skips it)
  --batch K          records per call of the one-appender batch run (default
                     256; 0 skips it)
  --configs LIST     of solo, backup1, backup2 (default all three)
  --pg-seconds S     pgbench seconds per client count (default 10)
  --pg-clients LIST  PostgreSQL client counts (default 32,64)
  --skip-pg          no PostgreSQL run; --skip-tandem: only PostgreSQL
  --dir DIR          where the work directory goes (default $TMPDIR or /tmp)
  --keep             leave the work directory (daemons stopped)
  --index-dir DIR    put each node's index under DIR (tandem init --index-dir),
                     another file system than the logs' (default: in the node)
EOF
}

die() {
    echo "bench_replication: $*" >&2
    exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build=$repo/build
seconds=10
warmup=1
appenders_list=1,16,64
shared_list=64
async_list=64
shared_batch=16
batch=256
configs_list=solo,backup1,backup2
pg_seconds=10
pg_clients=32,64
skip_pg=0
skip_tandem=0
parent=${TMPDIR:-/tmp}
keep=0
index_parent=""

if [[ $# -gt 0 && "$1" != -* ]]; then
    build=$1
    shift
fi
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --appenders) appenders_list=${2:?}; shift 2 ;;
        --shared) shared_list=${2:?}; shift 2 ;;
        --async) async_list=${2:?}; shift 2 ;;
        --shared-batch) shared_batch=${2:?}; shift 2 ;;
        --batch) batch=${2:?}; shift 2 ;;
        --configs) configs_list=${2:?}; shift 2 ;;
        --pg-seconds) pg_seconds=${2:?}; shift 2 ;;
        --pg-clients) pg_clients=${2:?}; shift 2 ;;
        --skip-pg) skip_pg=1; shift ;;
        --skip-tandem) skip_tandem=1; shift ;;
        --dir) parent=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --index-dir) index_parent=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
IFS=, read -r -a appender_counts <<<"$appenders_list"
IFS=, read -r -a shared_counts <<<"$shared_list"
IFS=, read -r -a async_counts <<<"$async_list"
IFS=, read -r -a configs <<<"$configs_list"
for n in "${appender_counts[@]}"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench_replication: bad appender count '$n'" >&2; exit 2; }
done
for config in "${configs[@]}"; do
    case "$config" in
        solo|backup1|backup2) ;;
        *) echo "bench_replication: unknown configuration '$config'" >&2; exit 2 ;;
    esac
done
[[ "$batch" =~ ^[0-9]+$ ]] || { echo "bench_replication: bad --batch" >&2; exit 2; }
[[ "$shared_batch" =~ ^[0-9]+$ && $shared_batch -le 4096 ]] || { echo "bench_replication: bad --shared-batch" >&2; exit 2; }

build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory $build"
tandem=$build/tools/tandem
tandemd=$build/tools/tandemd
bench_cluster=$build/bench/bench_cluster
pg_standby=$repo/bench/pg_standby.sh
command -v python3 >/dev/null 2>&1 || die "python3 not found (scripts/setup installs it)"
if [[ $skip_tandem -eq 0 ]]; then
    [[ -x "$tandem" ]] || die "$tandem not found (meson compile -C $build)"
    [[ -x "$tandemd" ]] || die "$tandemd not found (meson compile -C $build)"
    [[ -x "$bench_cluster" ]] ||
        die "$bench_cluster not found: it is built once include/tandem.h declares tandem_client_open (meson setup --reconfigure $build)"
fi

# ---- work directory and cleanup ----------------------------------------------------

mkdir -p "$parent"
work=$(mktemp -d "$(cd "$parent" && pwd)/bench_replication-XXXXXX")
# pg_standby.sh runs PostgreSQL as 'postgres' when we are root: it must reach $work/pg.
chmod 755 "$work"
index_root=""
if [[ -n "$index_parent" ]]; then
    mkdir -p "$index_parent"
    index_root=$(mktemp -d "$(cd "$index_parent" && pwd)/bench_replication-index-XXXXXX")
fi
results=$work/results.txt
: >"$results"
daemon_pids=()
child_pid=""

stop_daemons() {
    local pid status
    for pid in "${daemon_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${daemon_pids[@]}"; do
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "# bench_replication: tandemd $pid still runs 15 s after SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        status=0
        wait "$pid" 2>/dev/null || status=$?
        if [[ $status -ne 0 ]]; then
            echo "# bench_replication: tandemd $pid exited with status $status after SIGTERM" >&2
        fi
    done
    daemon_pids=()
}

cleanup() {
    local status=$?
    set +e
    if [[ -n "$child_pid" ]]; then
        kill -TERM "$child_pid" 2>/dev/null
        wait "$child_pid" 2>/dev/null
    fi
    stop_daemons
    if [[ $keep -eq 1 || $status -eq 1 ]]; then
        echo "# bench_replication: kept $work (the daemons' logs are n*.log there)" >&2
    else
        rm -rf "$work"
        [[ -z "$index_root" ]] || rm -rf "$index_root"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command in the background and wait for it, so that a signal to this
# script reaches the trap (and through it the command) at once.
run_child() {
    local status=0
    "$@" &
    child_pid=$!
    wait "$child_pid" || status=$?
    child_pid=""
    return "$status"
}

# A free TCP port on 127.0.0.1: nobody listens there (racy, as any such probe).
taken_ports=" "
free_port() { # sets the variable named $1
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        [[ "$taken_ports" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            taken_ports+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free port found on 127.0.0.1"
}

echo "# bench_replication: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr), $(nproc) cores," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
    "work directory $work ($(stat -f -c %T "$work")); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# build $build; git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$index_root" ]] || echo "# indexes in $index_root ($(stat -f -c %T "$index_root")), linked from the node directories"

# ---- tandem -------------------------------------------------------------------------------

ca=$work/ca
cert=$ca/clients/bench
export TANDEM_CERT=$cert

# The node directories, ports and daemons of one configuration.
node_count() {
    case "$1" in
        solo) echo 1 ;;
        backup1) echo 2 ;;
        backup2) echo 3 ;;
    esac
}

init_config() { # CONFIG: sets ports[] and primary_addr
    local config=$1 count i j peers min_copies conf
    count=$(node_count "$config")
    min_copies=2
    [[ $count -eq 1 ]] && min_copies=1
    ports=()
    for ((i = 1; i <= count; i++)); do
        free_port "ports[$i]"
    done
    for ((i = 1; i <= count; i++)); do
        peers=()
        for ((j = 1; j <= count; j++)); do
            ((j == i)) || peers+=(--peer "n$j=127.0.0.1:${ports[$j]}")
        done
        index_args=()
        [[ -z "$index_root" ]] || index_args=(--index-dir "$index_root/$config/n$i")
        "$tandem" init "$work/$config/n$i" --cluster bench --node "n$i" \
            --listen "127.0.0.1:${ports[$i]}" --ca "$ca" "${peers[@]}" --primary n1 \
            "${index_args[@]}" >/dev/null ||
            die "tandem init $work/$config/n$i failed"
        conf=$work/$config/n$i/tandem.conf
        grep -q '^min_copies = ' "$conf" || die "$conf has no min_copies line"
        sed -i "s/^min_copies = .*/min_copies = $min_copies/" "$conf"
    done
    primary_addr=127.0.0.1:${ports[1]}
    echo "# $config: $count node(s) on 127.0.0.1 ports ${ports[*]}, min_copies=$min_copies, primary n1"
}

start_config() { # CONFIG
    local config=$1 count i
    count=$(node_count "$config")
    for ((i = 1; i <= count; i++)); do
        "$tandemd" "$work/$config/n$i" 2>>"$work/$config/n$i.log" &
        daemon_pids+=($!)
    done
}

daemon_logs() { # CONFIG: the tails of its daemons' logs, on stderr
    local log
    for log in "$work/$1"/n*.log; do
        [[ -f "$log" ]] || continue
        echo "bench_replication: last lines of $log:" >&2
        tail -n 10 "$log" >&2
    done
}

# Healthy: exit status 0, health "healthy", every node listed with link "up",
# n1 the primary and the others backups.
status_healthy() { # ADDR COUNT
    local json
    json=$("$tandem" status --node "$1" --json 2>/dev/null) || return 1
    python3 -c '
import json, sys
doc = json.loads(sys.argv[1])
count = int(sys.argv[2])
nodes = doc.get("nodes", [])
ok = (doc.get("health") == "healthy" and doc.get("primary") == "n1" and len(nodes) == count
      and all(n.get("link") == "up" for n in nodes)
      and all(n.get("role") == ("primary" if n.get("id") == "n1" else "backup") for n in nodes))
sys.exit(0 if ok else 1)' "$json" "$2"
}

wait_healthy() { # CONFIG
    local config=$1 count pid
    count=$(node_count "$config")
    for _ in $(seq 1 600); do
        for pid in "${daemon_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { daemon_logs "$config"; die "$config: tandemd $pid exited"; }
        done
        status_healthy "$primary_addr" "$count" && return 0
        sleep 0.1
    done
    "$tandem" status --node "$primary_addr" >&2 || true
    daemon_logs "$config"
    die "$config: the cluster is not healthy within 60 s"
}

# "lag_s_p50=... lag_s_p99=... lag_records_p50=... lag_records_p99=... lag_samples=N"
# over every backup of every sample (nearest rank, as bench_cluster).
lag_summary() { # FILE
    python3 - "$1" <<'EOF'
import json, sys
seconds, records = [], []
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for node in doc.get("nodes", []):
            if node.get("id") == doc.get("primary") or "lag" not in node:
                continue
            seconds.append(float(node["lag"]["seconds"]))
            records.append(int(node["lag"]["records"]))
def pct(values, p):
    values = sorted(values)
    return values[int((len(values) - 1) * p / 100 + 0.5)]
if seconds:
    print("lag_s_p50=%.4f lag_s_p99=%.4f lag_records_p50=%d lag_records_p99=%d lag_samples=%d"
          % (pct(seconds, 50), pct(seconds, 99), pct(records, 50), pct(records, 99), len(seconds)))
else:
    print("lag_samples=0")
EOF
}

# CPU seconds (user + system) the configuration's daemons have used so far.
daemons_cpu() {
    local pid total=0 ticks
    for pid in "${daemon_pids[@]}"; do
        ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || ticks=0
        total=$((total + ticks))
    done
    awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

run_load() { # CONFIG RUN APPENDERS BATCH [CONNECTIONS [BENCH_CLUSTER_OPTION...]]
    local config=$1 run=$2 appenders=$3 k=$4 connections=${5:-$3} out samples line cpu0 cpu1
    local cpu_line
    shift $(($# < 5 ? $# : 5))
    out=$work/$config/$run.out
    samples=$work/$config/$run.status.jsonl
    cpu0=$(daemons_cpu)
    if ! run_child "$bench_cluster" --node "$primary_addr" --cert "$cert" --appenders "$appenders" \
        --connections "$connections" --batch "$k" --seconds "$seconds" --warmup "$warmup" \
        --status-file "$samples" --status-every 100 "$@" >"$out"; then
        daemon_logs "$config"
        die "$config: bench_cluster --appenders $appenders --batch $k failed"
    fi
    cpu1=$(daemons_cpu)
    line=$(grep '^tandem ' "$out") || die "$config: no result line from bench_cluster"
    cpu_line=$(grep '^cpu ' "$out") || die "$config: no cpu line from bench_cluster"
    line="config=$config run=$run ${line#tandem } ${cpu_line#cpu } daemons_cpu_s=$(awk \
        -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') $(lag_summary "$samples")"
    echo "$line" >>"$results"
    echo "# $line"
}

run_config() { # CONFIG
    local config=$1 n
    init_config "$config"
    start_config "$config"
    wait_healthy "$config"
    for n in "${appender_counts[@]}"; do
        run_load "$config" "threads$n" "$n" 1
    done
    for n in "${shared_counts[@]}"; do
        [[ "$n" == 0 ]] || run_load "$config" "shared$n" "$n" 1 1
    done
    for n in "${async_counts[@]}"; do
        [[ "$n" == 0 ]] || run_load "$config" "async$n" "$n" 1 1 --async
    done
    if [[ $shared_batch -gt 0 ]]; then
        run_load "$config" "shared64x$shared_batch" 64 "$shared_batch" 1
    fi
    if [[ $batch -gt 0 ]]; then
        run_load "$config" "batch$batch" 1 "$batch"
    fi
    stop_daemons
    traffic_summary "$config"
}

# Replication traffic of the configuration's daemons, from the line each
# tandemd traces when its node closes (net/uv_node.c): frames sent to other
# nodes, and of them the verification frames (CHECK, CHECK_RESULT;
# docs/PROTOCOL.md §9.1). Encoded frame bytes, TLS not counted.
traffic_summary() { # CONFIG
    local config=$1 log line sent=0 verify=0 found=0 re
    re='sent ([0-9]+) bytes in [0-9]+ frames to other nodes; verification \(CHECK, CHECK_RESULT\) ([0-9]+) bytes'
    for log in "$work/$config"/n*.log; do
        [[ -f "$log" ]] || continue
        line=$(grep -E "$re" "$log" | tail -n 1) || continue
        [[ "$line" =~ $re ]] || continue
        sent=$((sent + BASH_REMATCH[1]))
        verify=$((verify + BASH_REMATCH[2]))
        found=$((found + 1))
    done
    [[ $found -gt 0 ]] || return 0
    line="traffic config=$config nodes=$found sent_bytes=$sent verify_bytes=$verify"
    echo "$line" >>"$results"
    echo "# $line"
}

if [[ $skip_tandem -eq 0 ]]; then
    "$tandem" ca "$ca" --cluster bench >/dev/null || die "tandem ca --cluster failed"
    "$tandem" ca "$ca" --client bench >/dev/null || die "tandem ca --client failed"
    for config in "${configs[@]}"; do
        run_config "$config"
    done
fi

# ---- PostgreSQL ------------------------------------------------------------------------

if [[ $skip_pg -eq 0 ]]; then
    pg_out=$work/pg_standby.out
    if ! run_child "$pg_standby" --dir "$work/pg" --clients "$pg_clients" --seconds "$pg_seconds" \
        >"$pg_out"; then
        die "bench/pg_standby.sh failed"
    fi
    grep '^#' "$pg_out" || true
    grep '^pg_standby ' "$pg_out" | sed 's/^pg_standby /pg /' >>"$results"
    grep '^pg_standby ' "$pg_out" | sed 's/^/# /'
fi

# ---- report --------------------------------------------------------------------------------

python3 - "$results" <<'EOF'
import sys

rows, pg, traffic = [], {}, []
with open(sys.argv[1]) as f:
    for line in f:
        words = line.split()
        fields = dict(w.split("=", 1) for w in words if "=" in w)
        if words[0] == "pg":
            pg[int(fields["clients"])] = fields
        elif words[0] == "traffic":
            traffic.append(fields)
        else:
            rows.append(fields)

def num(fields, key):
    value = fields.get(key)
    return float(value) if value is not None else None

def fmt(value, digits=0):
    if value is None:
        return "-"
    if digits == 0:
        return "{:,.0f}".format(value)
    return "{:.{}f}".format(value, digits)

def ratio(a, b):
    return a / b if a is not None and b else None

def result(name, measure, value):
    if value is None:
        return
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    print("RESULT {} {} {:.{}f}".format(name, measure, value, decimals))

solo = {r["run"]: num(r, "records_per_s") for r in rows if r["config"] == "solo"}
pg64 = num(pg[64], "inserts_per_s") if 64 in pg else None

def cpu_us(fields, key):
    # CPU microseconds per acknowledged record over the whole run.
    n = num(fields, "records_all")
    value = num(fields, key)
    return 1e6 * value / n if n and value is not None else None

print()
print("| configuration | run | records/s | p50 / p99 ms | lag p50 / p99 s | lag p50 / p99 records"
      " | / solo | / pg 64 clients | CPU us/record: daemons + client |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    rate = num(r, "records_per_s")
    lag_s = ("-" if "lag_s_p50" not in r
             else "{} / {}".format(fmt(num(r, "lag_s_p50"), 3), fmt(num(r, "lag_s_p99"), 3)))
    lag_n = ("-" if "lag_records_p50" not in r
             else "{} / {}".format(fmt(num(r, "lag_records_p50")), fmt(num(r, "lag_records_p99"))))
    print("| {} | {} | {} | {} / {} | {} | {} | {} | {} | {} + {} |".format(
        r["config"], r["run"], fmt(rate), fmt(num(r, "p50_ms"), 2), fmt(num(r, "p99_ms"), 2),
        lag_s, lag_n, fmt(ratio(rate, solo.get(r["run"])), 2), fmt(ratio(rate, pg64), 1),
        fmt(cpu_us(r, "daemons_cpu_s")), fmt(cpu_us(r, "client_cpu_s"))))
for clients in sorted(pg):
    p = pg[clients]
    print("| postgresql 15 + sync standby | {} clients | {} | {} / {} | | | | {} |".format(
        clients, fmt(num(p, "inserts_per_s")), fmt(num(p, "p50_ms"), 2), fmt(num(p, "p99_ms"), 2),
        fmt(ratio(num(p, "inserts_per_s"), pg64), 2)))
print()

for r in rows:
    name = "replication.{}.{}".format(r["config"], r["run"])
    rate = num(r, "records_per_s")
    result(name, "records_per_s", rate)
    result(name, "latency_p50_ms", num(r, "p50_ms"))
    result(name, "latency_p99_ms", num(r, "p99_ms"))
    for key in ("lag_s_p50", "lag_s_p99", "lag_records_p50", "lag_records_p99"):
        result(name, key, num(r, key))
    result(name, "daemons_cpu_us_per_record", cpu_us(r, "daemons_cpu_s"))
    result(name, "client_cpu_us_per_record", cpu_us(r, "client_cpu_s"))
    if r["config"] != "solo":
        result(name, "tandem_over_solo", ratio(rate, solo.get(r["run"])))
    result(name, "tandem_over_pg64", ratio(rate, pg64))
for clients in sorted(pg):
    name = "replication.pg_standby.clients{}".format(clients)
    result(name, "inserts_per_s", num(pg[clients], "inserts_per_s"))
    result(name, "latency_p50_ms", num(pg[clients], "p50_ms"))
    result(name, "latency_p99_ms", num(pg[clients], "p99_ms"))

for t in traffic:
    name = "replication.{}.traffic".format(t["config"])
    sent, verify = num(t, "sent_bytes"), num(t, "verify_bytes")
    result(name, "sent_bytes", sent)
    result(name, "verification_bytes", verify)
    if sent:
        print("RESULT {} verification_over_replication {:.6f}".format(name, verify / sent))
        print("# target {}: verification at most 2% of replication bytes: {:.4f}%, {}".format(
            t["config"], 100 * verify / sent, "met" if verify <= 0.02 * sent else "NOT met"))

target = [r for r in rows
          if r["config"] != "solo" and r["run"] in ("threads64", "shared64", "async64")]
if target and pg64:
    for r in target:
        x = ratio(num(r, "records_per_s"), pg64)
        print("# target {} {} >= 20 x pg_standby 64 clients: {:.1f} x, {}".format(
            r["config"], r["run"], x, "met" if x >= 20 else "NOT met"))
for r in target:
    rate, p50, p99 = num(r, "records_per_s"), num(r, "p50_ms"), num(r, "p99_ms")
    half = ratio(rate, solo.get(r["run"]))
    print("# target {} {}: >= 0.5 x solo: {}; p50 < 1 ms: {}; p99 < 5 ms: {}; lag p99 < 10 ms: {}"
          .format(r["config"], r["run"],
                  "-" if half is None else "{:.2f}, {}".format(half, "met" if half >= 0.5 else "NOT met"),
                  "{:.2f}, {}".format(p50, "met" if p50 < 1 else "NOT met"),
                  "{:.2f}, {}".format(p99, "met" if p99 < 5 else "NOT met"),
                  "-" if num(r, "lag_s_p99") is None else "{:.1f} ms, {}".format(
                      1000 * num(r, "lag_s_p99"), "met" if num(r, "lag_s_p99") < 0.010 else "NOT met")))
EOF
