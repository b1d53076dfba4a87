#!/usr/bin/env bash
# bench/pg_standby.sh: the PostgreSQL peer of bench/bench_replication.sh.
#
# Question: how many acknowledged inserts per second, and at what latency, does
# PostgreSQL 15 make with one synchronous streaming standby on loopback
# (synchronous_commit=on: a commit returns once the standby has flushed its
# WAL), inserting tandem's message records from 32 and 64 concurrent clients?
#
# Happy path:
# 1. Make the work directory (it must not exist, or be empty): primary/ and
#    standby/ data directories, run/ for both servers' unix sockets, logs.
#    As root everything server-side runs as the 'postgres' system user
#    (PostgreSQL refuses root), which then owns the work directory.
# 2. initdb the primary (trust authentication: the servers listen on
#    127.0.0.1 and the work directory only), configure it (fsync=on,
#    synchronous_commit=on, wal_level=replica, synchronous_standby_names =
#    the standby, TLS 1.3 with a throw-away self-signed certificate unless
#    --no-tls) and start it on a free port.
# 3. pg_basebackup -R the standby from it over TCP (TLS), point its
#    primary_conninfo at the primary with application_name=standby1, start it
#    on another free port, and wait until pg_stat_replication on the primary
#    shows it streaming with sync_state 'sync'.
# 4. Create the message table (tandem's message record, include/tandem.h)
#    and the secondary indexes tandem keeps (engine/index.c): message_id,
#    (customer_id, time_ns), (customer_id, recipient), (customer_id, sender).
# 5. For each client count: CHECKPOINT, then pgbench with a custom script
#    (realistic random values, one INSERT ... RETURNING lsn per transaction,
#    prepared statements, over TCP with TLS like tandem's clients) for
#    --seconds, logging every transaction (--log); print
#      pg_standby clients=N inserts_per_s=X p50_ms=Y p99_ms=Z transactions=T
#    with the throughput from pgbench and the percentiles from its log, and
#    check that the standby is still 'sync'.
# 6. Wait until the standby has replayed everything and check that it holds
#    as many rows as the primary.
#
# Failure modes: a missing binary, a server that does not start, a standby
# that is not 'sync' within 60 s, a pgbench failure or failed transactions:
# one line on stderr ("pg_standby: ..."), exit status 1; the servers' logs are
# printed (their tails) first. Bad usage: exit status 2.
#
# Close: a trap on EXIT stops both servers (fast, then immediate) and removes
# the work directory, unless --keep.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/pg_standby.sh [--dir DIR] [--clients LIST] [--seconds S]
                           [--jobs J] [--no-tls] [--keep] [--pg-bin DIR]

PostgreSQL 15 with one synchronous streaming standby on 127.0.0.1: inserts of
tandem's message records from concurrent pgbench clients, one INSERT per
transaction. Prints per client count one line
  pg_standby clients=N inserts_per_s=X p50_ms=Y p99_ms=Z transactions=T

  --dir DIR       work directory, created and removed (default: a new one
                  under $TMPDIR or /tmp); as root it must be reachable by the
                  'postgres' user
  --clients LIST  client counts, comma-separated (default 32,64)
  --seconds S     pgbench duration per client count (default 10)
  --jobs J        pgbench threads (default: the number of cores, at most the
                  client count)
  --no-tls        plain TCP for clients and replication (default: TLS 1.3)
  --keep          leave the work directory (servers stopped)
  --pg-bin DIR    PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
EOF
}

die() {
    echo "pg_standby: $*" >&2
    exit 1
}

work=""
clients_list="32,64"
seconds=10
jobs=""
tls=1
keep=0
pg_bin=/usr/lib/postgresql/15/bin

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) work=${2:?}; shift 2 ;;
        --clients) clients_list=${2:?}; shift 2 ;;
        --seconds) seconds=${2:?}; shift 2 ;;
        --jobs) jobs=${2:?}; shift 2 ;;
        --no-tls) tls=0; shift ;;
        --keep) keep=1; shift ;;
        --pg-bin) pg_bin=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
IFS=, read -r -a clients_counts <<<"$clients_list"
for c in "${clients_counts[@]}"; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "pg_standby: bad client count '$c'" >&2; exit 2; }
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "pg_standby: --seconds takes whole seconds" >&2; exit 2; }
[[ -z "$jobs" || "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "pg_standby: bad --jobs" >&2; exit 2; }

for tool in initdb pg_ctl pg_basebackup pgbench psql postgres; do
    [[ -x "$pg_bin/$tool" ]] ||
        die "$pg_bin/$tool not found (install postgresql-15 and postgresql-client-15: scripts/bench-setup)"
done
if [[ $tls -eq 1 ]] && ! command -v openssl >/dev/null 2>&1; then
    die "openssl not found (needed for the servers' TLS certificate; or use --no-tls)"
fi

# Server-side commands run as 'postgres' when we are root.
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
    getent passwd postgres >/dev/null || die "running as root and there is no 'postgres' user to run the servers as"
    as_pg=(runuser -u postgres --)
fi

# ---- work directory and cleanup ----------------------------------------------------

if [[ -z "$work" ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/pg_standby-XXXXXX")
else
    if [[ -e "$work" && -n "$(ls -A "$work" 2>/dev/null)" ]]; then
        echo "pg_standby: $work exists and is not empty" >&2
        exit 2
    fi
    mkdir -p "$work"
fi
work=$(cd "$work" && pwd)
primary=$work/primary
standby=$work/standby
run=$work/run
started=()
child_pid=""

cleanup() {
    local status=$?
    set +e
    if [[ -n "$child_pid" ]]; then
        kill -TERM "$child_pid" 2>/dev/null
        wait "$child_pid" 2>/dev/null
    fi
    for data in "${started[@]}"; do
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -m fast -t 20 -w stop >/dev/null 2>&1 ||
            "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
    done
    if [[ $status -eq 1 ]]; then
        for log in "$work"/primary.log "$work"/standby.log; do
            if [[ -f "$log" ]]; then
                echo "pg_standby: last lines of $log:" >&2
                tail -n 15 "$log" >&2
            fi
        done
    fi
    if [[ $keep -eq 1 ]]; then
        echo "# pg_standby: kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command in the background and wait for it, so that a signal reaches
# the trap (and through it the command) at once, not when the command ends.
run_child() {
    local status=0
    "$@" &
    child_pid=$!
    wait "$child_pid" || status=$?
    child_pid=""
    return "$status"
}

mkdir -p "$run" "$work/pgbench"
if [[ ${#as_pg[@]} -gt 0 ]]; then
    chown -R postgres: "$work"
    "${as_pg[@]}" test -w "$work" ||
        die "the 'postgres' user cannot reach $work (a parent directory is not searchable); use --dir under /tmp"
fi
# Unix socket paths are limited to 107 bytes: run/.s.PGSQL.NNNNN.
((${#run} + 18 <= 107)) || die "work directory path too long for unix sockets: $run"

# A free TCP port on 127.0.0.1 (nobody listens; racy, as any such probe).
# Sets the variable named $1.
taken_ports=" "
free_port() {
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

primary_port=""
standby_port=""
free_port primary_port
free_port standby_port
sslmode=disable
[[ $tls -eq 1 ]] && sslmode=require

psql_at() { # PORT SQL...: one value per line, no headers
    local port=$1
    shift
    "${as_pg[@]}" "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$run" -p "$port" -U postgres \
        -d postgres "$@"
}

wait_ready() { # PORT: until the server accepts connections (30 s)
    for _ in $(seq 1 300); do
        if "${as_pg[@]}" "$pg_bin/pg_isready" -q -h "$run" -p "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "the server on port $1 did not accept connections within 30 s"
}

# ---- primary ----------------------------------------------------------------------------

pg_version=$("$pg_bin/postgres" --version)
echo "# $pg_version; work directory $work ($(stat -f -c %T "$work")); $(nproc) cores;" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"

"${as_pg[@]}" "$pg_bin/initdb" -D "$primary" -U postgres --auth=trust -E UTF8 --locale=C \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }

if [[ $tls -eq 1 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -keyout "$primary/server.key" -out "$primary/server.crt" \
        >"$work/openssl.log" 2>&1 || { cat "$work/openssl.log" >&2; die "openssl req failed"; }
    chmod 600 "$primary/server.key"
    if [[ ${#as_pg[@]} -gt 0 ]]; then
        chown postgres: "$primary/server.key" "$primary/server.crt"
    fi
fi

{
    echo "# bench/pg_standby.sh"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $primary_port"
    echo "unix_socket_directories = '$run'"
    echo "max_connections = 200"
    echo "fsync = on"
    echo "synchronous_commit = on"
    echo "full_page_writes = on"
    echo "wal_level = replica"
    echo "max_wal_senders = 4"
    echo "synchronous_standby_names = 'FIRST 1 (standby1)'"
    echo "max_wal_size = 4GB"
    echo "checkpoint_timeout = 15min"
    if [[ $tls -eq 1 ]]; then
        echo "ssl = on"
        echo "ssl_cert_file = 'server.crt'"
        echo "ssl_key_file = 'server.key'"
        echo "ssl_min_protocol_version = 'TLSv1.3'"
    fi
} >>"$primary/postgresql.conf"

started+=("$primary")
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$primary" -l "$work/primary.log" -w -t 60 start >/dev/null ||
    die "the primary did not start"
wait_ready "$primary_port"

# ---- standby ----------------------------------------------------------------------------

conninfo="host=127.0.0.1 port=$primary_port user=postgres sslmode=$sslmode application_name=standby1"
"${as_pg[@]}" "$pg_bin/pg_basebackup" -d "$conninfo" -D "$standby" -R -X stream \
    --checkpoint=fast >"$work/basebackup.log" 2>&1 ||
    { cat "$work/basebackup.log" >&2; die "pg_basebackup failed"; }
{
    echo "# bench/pg_standby.sh: the standby"
    echo "port = $standby_port"
    echo "primary_conninfo = '$conninfo'"
    echo "hot_standby = on"
} >>"$standby/postgresql.auto.conf"
[[ -f "$standby/standby.signal" ]] || die "pg_basebackup -R wrote no standby.signal"

started+=("$standby")
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$standby" -l "$work/standby.log" -w -t 60 start >/dev/null ||
    die "the standby did not start"
wait_ready "$standby_port"

sync_state() {
    psql_at "$primary_port" -c \
        "SELECT state || '/' || sync_state FROM pg_stat_replication WHERE application_name = 'standby1'"
}
state=""
for _ in $(seq 1 600); do
    state=$(sync_state)
    [[ "$state" == "streaming/sync" ]] && break
    sleep 0.1
done
[[ "$state" == "streaming/sync" ]] || die "the standby is not streaming and sync within 60 s (state '$state')"
link_ssl=$(psql_at "$primary_port" -c \
    "SELECT coalesce(s.version, 'no TLS') FROM pg_stat_replication r
       LEFT JOIN pg_stat_ssl s ON s.pid = r.pid WHERE r.application_name = 'standby1'")
echo "# primary on 127.0.0.1:$primary_port, standby1 on 127.0.0.1:$standby_port, streaming," \
    "sync_state sync, replication link $link_ssl, clients sslmode=$sslmode"

# ---- schema -----------------------------------------------------------------------------

# tandem's message record (include/tandem.h, struct tandem_message) with an
# identity column for the LSN that tandem_append() returns. customer_id is
# u32 (bigint here); time is UTC nanoseconds (bigint: timestamptz has only
# microseconds); the subject is raw bytes (not always UTF-8).
psql_at "$primary_port" >/dev/null <<'EOF'
CREATE DATABASE bench;
\c bench
CREATE TYPE destination AS ENUM ('delivered', 'quarantined');
CREATE TYPE classification AS ENUM ('clean', 'spam', 'virus', 'banned_file', 'bad_header', 'oversized');
CREATE TABLE message (
    lsn bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    time_ns bigint NOT NULL,
    size bigint NOT NULL,
    destination destination NOT NULL,
    classification classification NOT NULL,
    threat text NOT NULL,
    recipient text NOT NULL,
    spam_score numeric(10, 3) NOT NULL,
    message_id text NOT NULL,
    sender text NOT NULL,
    relay_ip inet NOT NULL,
    subject bytea NOT NULL
);
-- The secondary indexes of tandem's index (engine/index.c): message_id,
-- customer_time, recipient (customer, recipient -> time), sender (likewise).
CREATE INDEX message_message_id ON message (message_id);
CREATE INDEX message_customer_time ON message (customer_id, time_ns);
CREATE INDEX message_recipient ON message (customer_id, recipient, time_ns);
CREATE INDEX message_sender ON message (customer_id, sender, time_ns);
EOF

# One message record per transaction, with values shaped like tools/gen.c's:
# skewed customers, the classification mix (clean 62%, spam 30%, bad_header
# 5.5%, banned_file 1.1%, oversized 1%, virus 0.4%), log-ish sizes, spam
# scores, bounces with an empty sender (2%), documentation IPv4/IPv6 relays,
# template subjects (1% empty), "<YYYYMMDDhhmmss.hex@mxN.domain>" Message-IDs. (No
# colon in a literal: pgbench would read ":name" as a variable.)
script=$work/insert.sql
cat >"$script" <<'EOF'
\set customer random_zipfian(1, 1000, 1.07)
\set user random(1, 320)
\set domain random(1, 3)
\set r random(1, 10000)
\set classification case when :r <= 6200 then 1 when :r <= 9200 then 2 when :r <= 9750 then 5 when :r <= 9860 then 4 when :r <= 9960 then 6 else 3 end
\set quarantined case when :classification = 1 or :classification = 5 then 0 when random(1, 10) = 1 then 0 else 1 end
\set size case when :classification = 6 then random(52428800, 157286400) when :classification = 2 then random_exponential(300, 2000000, 250) else random_exponential(300, 45000000, 1800) end
\set score case when :classification = 2 then random(5000, 60000) when random(1, 3) = 1 then random(-3000, 0) else random(0, 4500) end
\set mid random(0, 4294967295)
\set mx random(1, 9)
\set sender_kind random(1, 100)
\set sender_n random(1, 99999)
\set ip random(1, 254)
\set ip6 random(1, 10)
\set subject random(1, 100)
\set subject_n random(1, 99999)
INSERT INTO message (customer_id, time_ns, size, destination, classification, threat,
                     recipient, spam_score, message_id, sender, relay_ip, subject)
VALUES (:customer::bigint,
        (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint,
        :size::bigint,
        (CASE :quarantined::integer WHEN 1 THEN 'quarantined' ELSE 'delivered' END)::destination,
        (ARRAY['clean', 'spam', 'virus', 'banned_file', 'bad_header', 'oversized'])[:classification::integer]::classification,
        CASE :classification::integer WHEN 3 THEN 'Eicar-Test-Signature' WHEN 4 THEN 'invoice.exe' ELSE '' END,
        'user' || :user::text || '.ZZPII-' || :customer::text || '@northwind-' || :customer::text
            || '-' || :domain::text || '.example.com',
        :score::numeric / 1000,
        '<' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS') || '.'
            || lpad(to_hex(:mid::bigint), 8, '0') || '@mx' || :mx::text || '.contoso-'
            || :customer::text || '.test>',
        CASE WHEN :sender_kind::integer <= 2 THEN ''
             WHEN :sender_kind::integer <= 60 THEN 'jean.keller.ZZPII-x' || :sender_n::text || '@post.example'
             ELSE 'xhztlv' || :sender_n::text || '@prize-' || :mx::text || '.test' END,
        (CASE WHEN :ip6::integer = 1 THEN '2001' || chr(58) || 'db8' || chr(58) || chr(58) || to_hex(:ip::integer)
              ELSE '192.0.2.' || :ip::text END)::inet,
        convert_to(CASE WHEN :subject::integer = 1 THEN ''
                        ELSE (ARRAY['Re: project Falcon ', 'Weekly newsletter #', 'URGENT: verify your account ',
                                    'Invoice ', 'Re: Re: meeting on Tuesday ', 'You have won EUR ',
                                    'Größe ', 'Your parcel is waiting ', 'Fwd: quarterly report Q'])[1 + :subject::integer % 9]
                             || :subject_n::text END, 'UTF8'))
RETURNING lsn;
EOF
if [[ ${#as_pg[@]} -gt 0 ]]; then
    chown -R postgres: "$work"
fi

# ---- runs -------------------------------------------------------------------------------

cores=$(nproc)
for clients in "${clients_counts[@]}"; do
    j=${jobs:-$cores}
    ((j > clients)) && j=$clients
    psql_at "$primary_port" -d bench -c "CHECKPOINT" >/dev/null
    prefix=$work/pgbench/c$clients
    out=$work/pgbench/c$clients.out
    # pgbench connects like tandem's clients: TCP to 127.0.0.1, TLS unless --no-tls.
    if ! run_child "${as_pg[@]}" env PGSSLMODE=$sslmode "$pg_bin/pgbench" -n -h 127.0.0.1 \
        -p "$primary_port" -U postgres -M prepared -c "$clients" -j "$j" -T "$seconds" \
        -f "$script" --log --log-prefix="$prefix" bench >"$out" 2>"$out.err"; then
        cat "$out" "$out.err" >&2
        die "pgbench -c $clients failed"
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    [[ -n "$tps" ]] || { cat "$out" >&2; die "no tps in pgbench's output"; }
    [[ -z "$failed" || "$failed" == 0 ]] || { cat "$out" >&2; die "pgbench -c $clients: $failed failed transactions"; }
    # Log lines: client_id transaction_no time_us script_no epoch_s epoch_us.
    read -r count p50 p99 < <(cat "$prefix".* | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n |
        awk '{ v[NR] = $1 }
             function pct(p,   i) { i = int((NR - 1) * p / 100 + 0.5) + 1; return v[i] / 1000 }
             END { if (NR == 0) { print 0, 0, 0 } else { printf "%d %.2f %.2f\n", NR, pct(50), pct(99) } }')
    ((count > 0)) || die "pgbench -c $clients logged no transaction"
    rm -f "$prefix".*
    state=$(sync_state)
    [[ "$state" == "streaming/sync" ]] || die "after -c $clients the standby is '$state', not streaming/sync"
    printf 'pg_standby clients=%d inserts_per_s=%.0f p50_ms=%s p99_ms=%s transactions=%d\n' \
        "$clients" "$tps" "$p50" "$p99" "$count"
done

# ---- the standby holds what the primary acknowledged -------------------------------------

target=$(psql_at "$primary_port" -d bench -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 600); do
    behind=$(psql_at "$primary_port" -c \
        "SELECT pg_wal_lsn_diff('$target', replay_lsn) > 0 FROM pg_stat_replication
          WHERE application_name = 'standby1'")
    [[ "$behind" == "f" ]] && break
    sleep 0.1
done
[[ "$behind" == "f" ]] || die "the standby did not replay up to $target within 60 s"
rows_primary=$(psql_at "$primary_port" -d bench -c "SELECT count(*) FROM message")
rows_standby=$(psql_at "$standby_port" -d bench -c "SELECT count(*) FROM message")
[[ "$rows_primary" == "$rows_standby" ]] ||
    die "the standby holds $rows_standby rows, the primary $rows_primary"
echo "# the standby replayed every row: $rows_standby rows on both"
