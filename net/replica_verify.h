/* net/replica_verify.h: the continuous comparison of copies inside the pure
 * replica (docs/PROTOCOL.md §9): the state net/replica.h embeds in struct
 * tdm_replica, the two actions it adds (read a chain hash, record a verified
 * claim) and their limits. The logic is net/replica_verify.c.
 *
 * What is compared: the chain hash at one LSN, a batch end in the primary's
 * log that both the primary and the backup hold durably. Equal chain hashes at
 * n mean equal histories through n (DESIGN "The log"), so one small frame per
 * backup per checkpoint proves a whole copy. The same LSN on both sides, always:
 * the primary names it in CHECK and the backup reads its own batch there.
 *
 * Thread: part of struct tdm_replica (one thread). */
#ifndef TDM_NET_REPLICA_VERIFY_H
#define TDM_NET_REPLICA_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "net/frame.h"

#define TDM_VERIFY_INTERVAL_MS_DEFAULT 2000 /* A checkpoint per backup this often. */
/* Reads one step can ask for: one per backup (primary), one for a CHECK (backup). */
#define TDM_ACTIONS_READS_MAX (TDM_REPLICA_NODES_MAX + 1)
/* Verified claims one step can record: at most one per node. */
#define TDM_ACTIONS_VERIFIED_MAX TDM_REPLICA_NODES_MAX

/* Action: read the batch of the local log that holds lsn, and report its LSN
 * range and its chain hash with a CHAIN_READ event echoing read_id. The LSN is
 * durable here when asked for; the answer is the log's at the time of the read. */
struct tdm_action_read {
    uint64_t read_id; /* >= 1, increasing over the replica's life. */
    uint64_t lsn;     /* >= 1. */
};

/* Action: the copy of node node_index is proven equal to the primary's through
 * lsn. The adapter keeps "verified through lsn at wall time t" durably
 * (docs/FORMAT.md "Verified state"): fresh stamps the wall time of now; a claim
 * that is not fresh lowers an older one (a cut, a mismatch) and keeps its time. */
struct tdm_action_verified {
    uint32_t node_index;
    uint64_t lsn;
    bool fresh;
};

enum tdm_verify_state {
    TDM_VERIFY_IDLE = 1, /* Nothing in flight for this backup. */
    TDM_VERIFY_READING,  /* A read of our own chain hash is in flight. */
    TDM_VERIFY_CHECKING, /* A CHECK is in flight. */
};

/* The primary's comparison with one backup. The transient part (state, the
 * read and the check in flight, the bisection) belongs to one LIVE link and is
 * dropped when the link changes; the claims survive. */
struct tdm_verify_peer {
    /* Claims. */
    uint64_t verified_lsn;     /* Proven equal through here; 0 if never. */
    uint64_t divergent_first;  /* The first divergent batch found; 0, 0: none known. */
    uint64_t divergent_last;   /* */
    uint64_t mismatches_found; /* Bisections started since the replica started. */
    /* Transient. */
    enum tdm_verify_state state;
    uint64_t link_ms;    /* peers[i].link_ms of the LIVE link this belongs to; 0: none. */
    uint64_t next_ms;    /* No regular checkpoint before this. */
    uint64_t seal_lsn;   /* A sealed segment's last LSN to check as soon as held; 0: none. */
    uint64_t read_id;    /* READING. */
    uint64_t read_limit; /* READING: the probe must be a batch end <= this. */
    uint64_t check_id;   /* CHECKING. */
    uint64_t check_lsn;  /* CHECKING: the probe. */
    uint64_t check_ms;   /* CHECKING: when it was sent. */
    struct tdm_frame_chain_hash check_hash; /* CHECKING: ours at check_lsn. */
    /* Bisection: equal at good_lsn (0: the empty history), different at
     * bad_lsn, both batch ends of our log; bad_lsn 0: not bisecting. */
    uint64_t good_lsn;
    uint64_t bad_lsn;
    bool confirm_good; /* good_lsn is an older claim: check it again first. */
};

/* A backup's side: the CHECK it is answering and what it learnt. */
struct tdm_verify_self {
    uint64_t verified_lsn;     /* Its copy proven equal to the primary's through here. */
    uint64_t divergent_first;  /* As the primary last named it; 0, 0: none. */
    uint64_t divergent_last;   /* */
    uint64_t mismatches_found; /* DIFFERENT verdicts given since the replica started. */
    bool pending;              /* Reading for check. */
    uint64_t read_id;
    uint64_t link_ms; /* The primary's link when the CHECK arrived. */
    uint64_t epoch;   /* The replica's epoch then. */
    struct tdm_frame_check check;
};

struct tdm_verify {
    uint64_t read_id_last;
    uint64_t check_id_last;
    struct tdm_verify_peer peers[TDM_REPLICA_NODES_MAX]; /* Primary: by backup index. */
    struct tdm_verify_self self;                         /* Backup. */
};

#endif
