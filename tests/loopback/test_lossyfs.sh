#!/usr/bin/env bash
# tests/loopback/test_lossyfs.sh: a power cut of lossyfs (tests/lib/lossyfs.c)
# loses exactly what was not synced, and a tandem node on it keeps every LSN
# it acknowledged. Usage: test_lossyfs.sh LOSSYFS TANDEM [TANDEMD]
#
# Proves, against real processes over a fresh backing directory ("the disk"),
# with one cut and reboot (a new lossyfs over the same disk) per part:
# - file data: before the cut, reads and stat see unsynced writes (an append,
#   an overwrite across a page boundary, a truncate) while the disk holds only
#   what fsync/fdatasync flushed; after it, exactly the synced bytes are there;
# - names: a write + fsync + rename + directory fsync survives; a create whose
#   data was synced but whose directory was not, a rename over a file, an
#   unlink and a mkdir without a directory fsync are undone;
# - LMDB: a transaction committed by mdb_load survives (skipped without
#   lmdb-utils);
# - tandem: every LSN `tandem append` printed is in the log after the cut
#   (tandem verify), the index reopens or is rebuilt (verify --deep), and
#   status and query work; with TANDEMD, the same for a tandemd on the mount
#   cut in the middle of a streaming append (its LMDB file made durable
#   first, so that the cut lands on LMDB transactions in flight).
# The planted-bug build (-Dplanted_bug=ack_before_fdatasync) must fail the
# tandem parts: its acknowledged LSNs never reached the disk.
# Skips (77) unless root with /dev/fuse, umount and mountpoint. Every process
# started here is killed, and the mount detached, in teardown.
set -uo pipefail
L=$1
T=$2
D=${3:-}
skip() { echo "skip: $1"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "lossyfs mounts need root"
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
for tool in umount mountpoint; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
work=$(mktemp -d)
disk=$work/disk
mnt=$work/mnt
sock=$work/control
mkdir -p "$disk" "$mnt"
pids=()
fs_pid=
cleanup() {
    for p in "${pids[@]}" $fs_pid; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    umount -l "$mnt" 2>/dev/null # Dead or alive; a no-op when not mounted.
    rm -rf "$work"
}
trap cleanup EXIT
fail=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fail=1; fi
}

# Power on: mount a new lossyfs over the disk.
boot() {
    "$L" "$disk" "$mnt" "$sock" 2>>"$work/lossyfs.err" &
    fs_pid=$!
    for _ in $(seq 100); do
        mountpoint -q "$mnt" && return 0
        sleep 0.05
    done
    echo "FAIL lossyfs did not mount"; cat "$work/lossyfs.err"; exit 1
}
# Power cut: "cut" drops what was not synced; then every process that used
# the mount is killed and lossyfs, which detaches the mount, must exit 0.
power_cut() {
    echo "info before the cut: $("$L" --send "$sock" stats)"
    check "cut answers ok" ok "$("$L" --send "$sock" cut)"
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    pids=()
    for _ in $(seq 100); do kill -0 "$fs_pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$fs_pid" 2>/dev/null
    wait "$fs_pid"; check "lossyfs exits 0 after the cut" 0 $?
    fs_pid=
    umount -l "$mnt" 2>/dev/null # A no-op: lossyfs detached its mount.
}
count_a() { tr -cd a < "$1" | wc -c; }

echo "# file data and names"
boot
printf 'synced\n' > "$mnt/f" && sync "$mnt/f"
head -c 8192 /dev/zero | tr '\0' a > "$mnt/g" && sync -d "$mnt/g"
printf 'v2\n' > "$mnt/conf.tmp" && sync "$mnt/conf.tmp" && mv "$mnt/conf.tmp" "$mnt/conf"
printf 'kept\n' > "$mnt/keep" && sync "$mnt/keep"
mkdir "$mnt/dir"
sync "$mnt" # The names above are durable from here on.
printf 'unsynced\n' >> "$mnt/f"
printf 'bbbb' | dd of="$mnt/g" bs=1 seek=4094 conv=notrunc status=none
truncate -s 100 "$mnt/g" && truncate -s 6000 "$mnt/g"
printf 'v3\n' > "$mnt/conf.new" && sync "$mnt/conf.new" && mv "$mnt/conf.new" "$mnt/conf"
printf 'x\n' > "$mnt/dir/new" && sync "$mnt/dir/new"
rm "$mnt/keep"
mkdir "$mnt/newdir"
check "reads see unsynced data" "synced unsynced" "$(xargs < "$mnt/f")"
check "stat sees the unsynced size" 16 "$(stat -c %s "$mnt/f")"
check "the disk holds only the synced data" 7 "$(stat -c %s "$disk/f")"
check "a truncate hides the old bytes when the file grows again" "6000 100" \
    "$(stat -c %s "$mnt/g") $(count_a "$mnt/g")"
check "the renamed file is seen" v3 "$(cat "$mnt/conf")"
power_cut
boot
check "synced data survives, unsynced is lost" synced "$(cat "$mnt/f")"
check "an unsynced overwrite and truncate are lost" "8192 8192" \
    "$(stat -c %s "$mnt/g") $(count_a "$mnt/g")"
check "a rename after a directory fsync survives" v2 "$(cat "$mnt/conf")"
check "a rename without one is undone" "no conf.new" \
    "$([[ -e "$mnt/conf.new" ]] && echo conf.new || echo no conf.new)"
check "a create without a directory fsync is undone" "no new" \
    "$([[ -e "$mnt/dir/new" ]] && echo new || echo no new)"
check "an unlink without one is undone" kept "$(cat "$mnt/keep" 2>&1)"
check "a mkdir without one is undone" "no newdir" \
    "$([[ -d "$mnt/newdir" ]] && echo newdir || echo no newdir)"
check "the trash is hidden" "conf dir f g keep" "$(ls "$mnt" | xargs)"

if command -v mdb_load >/dev/null 2>&1; then
    echo "# LMDB"
    mkdir "$mnt/lmdb" && sync "$mnt"
    printf 'VERSION=3\nformat=print\ntype=btree\nHEADER=END\n k1\n v1\n k2\n v2\nDATA=END\n' \
        > "$work/dump"
    mdb_load -f "$work/dump" "$mnt/lmdb"; check "mdb_load on the mount" 0 $?
    sync "$mnt/lmdb" # LMDB syncs its files, not their names.
    mdb_dump -p "$mnt/lmdb" > "$work/before"
    power_cut
    boot
    mdb_dump -p "$mnt/lmdb" > "$work/after"; check "mdb_dump after the cut" 0 $?
    check "a committed LMDB transaction survives" "$(cat "$work/before")" "$(cat "$work/after")"
else
    echo "skip LMDB: lmdb-utils is not installed"
fi

# The highest LSN printed as {"lsn": N} in file $1 (0 if none).
lsn_max() { grep -o '[0-9]\+' "$1" | sort -n | tail -1 | grep . || echo 0; }
# Every LSN up to $1 is in the node's log, and the node serves again.
check_node() {
    local printed=$1 what=$2 last rc
    "$T" status --node "$N" > "$work/status" 2>&1; rc=$?
    [[ $rc -eq 0 ]] || echo "note $what: status before any writer reopened the node: rc $rc: $(head -1 "$work/status")"
    "$T" verify --node "$N" > "$work/verify" 2>&1; rc=$?
    check "$what: verify rc" 0 $rc
    last=$(sed -n 's/^log *lsn [0-9]*\.\.\([0-9]*\) .*/\1/p' "$work/verify")
    last=${last:-0}
    echo "info $what: $printed LSNs acknowledged before the cut, $last in the log after it"
    check "$what: every acknowledged LSN is in the log" yes \
        "$([[ $printed -gt 0 && $last -ge $printed ]] && echo yes || echo "no: log ends at $last")"
    "$T" verify --node "$N" --deep > /dev/null 2>&1; rc=$?
    [[ $rc -le 1 ]] || { echo "FAIL $what: verify --deep rc $rc"; fail=1; }
    "$T" status --node "$N" --json > "$work/status"; rc=$?
    check "$what: status rc after verify --deep" 0 $rc
    check "$what: the index is current" "$last" \
        "$(grep -o '"index_lsn": [0-9]*' "$work/status" | grep -o '[0-9]*$')"
    "$T" query --node "$N" --customer 2 > /dev/null; rc=$?
    check "$what: query finds customer 2" 0 $rc
}

echo "# tandem append, then a cut"
N=$mnt/n1
"$T" init "$N" --cluster c --node n1 > /dev/null; check "init on the mount" 0 $?
"$T" generate --seed 1 --customers 10 --count 300 > "$work/r1.jsonl"
"$T" append --node "$N" < "$work/r1.jsonl" > "$work/lsn1"; check "append on the mount" 0 $?
"$T" query --node "$N" --customer 2 > /dev/null; check "query on the mount (LMDB)" 0 $?
power_cut
boot
check_node "$(lsn_max "$work/lsn1")" "append"

if [[ -n "$D" ]]; then
    echo "# tandemd, cut in the middle of a streaming append"
    N=$mnt/n2 # A node of its own: this part proves durability by itself.
    "$T" init "$N" --cluster c --node n2 > /dev/null; check "init n2 on the mount" 0 $?
    # 32 KiB segments: the cut lands after several prepared segments (written
    # full of zeros ahead, docs/FORMAT.md "Prepared segments"), in one of them.
    printf '\n[log]\nsegment_size = 32768\n' >> "$N/tandem.conf"
    "$D" "$N" 2> "$work/tandemd.err" &
    pids+=($!)
    for _ in $(seq 100); do [[ -S "$N/tandemd.sock" ]] && break; sleep 0.05; done
    check "tandemd serves on the mount" yes "$([[ -S "$N/tandemd.sock" ]] && echo yes)"
    # Everything on the disk, names too (as after an idle minute on a real
    # disk): the cut then lands on an LMDB file that exists, with transactions
    # in flight, and reopening it must work.
    check "sync answers ok" ok "$("$L" --send "$sock" sync)"
    "$T" generate --seed 2 --customers 10 --count 60000 > "$work/r2.jsonl"
    "$T" append --node "$N" < "$work/r2.jsonl" > "$work/lsn2" 2> "$work/append2.err" &
    pids+=($!)
    # Cut once some LSNs are acknowledged, while more are in flight (the input
    # is all there: the stream never waits for it).
    # And once a segment made from a prepared file holds batches.
    prepared_count() {
        python3 - "$N/log" <<'PY'
import os, sys
d = sys.argv[1]
print(sum(1 for n in os.listdir(d) if n.endswith(".seg") and
          open(os.path.join(d, n), "rb").read(8)[6:8] == b"\x01\x00"))
PY
    }
    for _ in $(seq 500); do
        [[ $(wc -l < "$work/lsn2") -ge 500 ]] && break
        sleep 0.01
    done
    for _ in $(seq 100); do
        [[ $(prepared_count) -ge 1 ]] && break
    done
    prepared=$(prepared_count)
    check "tandemd: a prepared segment before the cut" yes \
        "$([[ ${prepared:-0} -ge 1 ]] && echo yes || echo "no: $prepared")"
    power_cut
    boot
    check_node "$(lsn_max "$work/lsn2")" "tandemd"
    echo "info tandemd: $prepared prepared segments before the cut, $(prepared_count) after it"
fi

power_cut # Leave the disk as the last cut left it; teardown removes it.
if [[ $fail -ne 0 ]]; then
    echo "lossyfs: FAILED; lossyfs's stderr:"
    grep -v 'Ignoring invalid max threads' "$work/lossyfs.err" # libfuse 3.14's own noise
else
    echo "lossyfs: ok"
fi
exit $fail
