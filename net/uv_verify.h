/* net/uv_verify.h: the libuv adapter's part of verification (docs/PROTOCOL.md
 * §9): the replica's read actions (the chain hash of the batch holding an LSN,
 * read from the log on the threadpool and reported as CHAIN_READ events) and
 * its verified claims, stamped with the wall time and kept in DIR/verified
 * (docs/FORMAT.md "Verified state"). net/uv_node.c owns one.
 *
 * Happy path:
 * 1. tdm_uv_verify_load() reads DIR/verified at start; the LSNs go into the
 *    replica's config, the whole entries into tdm_uv_verify_init().
 * 2. After each step, tdm_uv_verify_apply(): every read becomes a threadpool
 *    job (tdm_log_locate + tdm_log_read_located: header and body checksums
 *    verified), whose result comes back through cb as a CHAIN_READ event;
 *    every claim updates the table (a fresh claim takes the wall time now)
 *    and, when an LSN changed or a time moved by TDM_UV_VERIFY_STORE_MS, the
 *    table is written (DIR/verified.tmp, fdatasync, rename, fsync DIR) on the
 *    threadpool, one write at a time.
 * Failure modes: a read that fails is reported with its status (the replica
 * drops or answers that check); a write that fails is traced and retried with
 * the next change (the claims are monitoring state, not data: the node goes
 * on); a DIR/verified that does not parse is traced and ignored at start.
 * Close: tdm_uv_verify_close() drops what has not started; cb(data, NULL)
 * runs after each job that finishes meanwhile, and tdm_uv_verify_busy() says
 * when none is left.
 *
 * Thread: the loop thread; jobs run on the threadpool with their own copies. */
#ifndef TDM_NET_UV_VERIFY_H
#define TDM_NET_UV_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine/base/error.h"
#include "engine/fs.h"
#include "net/frame_proto.h"
#include "net/replica.h"

#define TDM_UV_VERIFY_NAME     "verified"
#define TDM_UV_VERIFY_MAGIC    "tandem-verified 1"
#define TDM_UV_VERIFY_STORE_MS 10000 /* A refreshed time alone is written this often. */

struct tdm_log;

/* One node's claim: its copy equal to the primary's through lsn, as of at_ns. */
struct tdm_uv_verify_entry {
    uint64_t lsn;  /* 0: nothing proven (or the empty history). */
    int64_t at_ns; /* Wall time (UTC, ns since 1970) of the proof; 0: never. */
};

/* A read finished (event: a CHAIN_READ to step), or, with event NULL, a job
 * ended while closing. Loop thread. */
typedef void (*tdm_uv_verify_cb)(void *data, struct tdm_event *event);

struct tdm_uv_verify {
    uv_loop_t *loop;
    struct tdm_log *log; /* Borrowed until close. */
    char dir[TDM_PATH_SIZE];
    struct tdm_frame_cluster cluster;
    tdm_uv_verify_cb cb;
    void *data;
    struct tdm_uv_verify_entry claims[TDM_REPLICA_NODES_MAX]; /* By node index. */
    struct tdm_uv_verify_entry stored[TDM_REPLICA_NODES_MAX]; /* As DIR/verified holds them. */
    uint32_t reads_running;
    bool store_running;
    bool closing;
};

/* Read dir/DIR/verified into entries (by node index of cluster; zero for a
 * node it does not name). Returns 0 (also when there is no file), or
 * TANDEM_ECORRUPT with diag when it does not parse (entries are then zero). */
int tdm_uv_verify_load(const char *dir, const struct tdm_frame_cluster *cluster,
                       struct tdm_uv_verify_entry entries[TDM_REPLICA_NODES_MAX],
                       struct tdm_diag *diag);

/* Initialise v in place; entries (copied) is what tdm_uv_verify_load() read. */
void tdm_uv_verify_init(struct tdm_uv_verify *v, uv_loop_t *loop, struct tdm_log *log,
                        const char *dir, const struct tdm_frame_cluster *cluster,
                        const struct tdm_uv_verify_entry entries[TDM_REPLICA_NODES_MAX],
                        tdm_uv_verify_cb cb, void *data);

/* Carry out actions->reads[] and actions->verified[]. */
void tdm_uv_verify_apply(struct tdm_uv_verify *v, const struct tdm_actions *actions);

/* The claim for node index. */
struct tdm_uv_verify_entry tdm_uv_verify_claim(const struct tdm_uv_verify *v, uint32_t index);

/* Stop starting jobs; those running end with cb(data, NULL). */
void tdm_uv_verify_close(struct tdm_uv_verify *v);

/* True while a job runs. */
bool tdm_uv_verify_busy(const struct tdm_uv_verify *v);

#endif
