/* net/replica_switch.h: switchover and failover inside the pure replica
 * (docs/PROTOCOL.md §8): the state net/replica.h embeds in struct tdm_replica,
 * the report action the adapter prints, and their limits. The logic is
 * net/replica_switch.c (switchover, following a new primary, epoch numbers)
 * and net/replica_failover.c (probe, fence, promote).
 *
 * Thread: part of struct tdm_replica (one thread). */
#ifndef TDM_NET_REPLICA_SWITCH_H
#define TDM_NET_REPLICA_SWITCH_H

#include <stdbool.h>
#include <stdint.h>

#include "net/frame.h"

/* SWITCHOVER's target_index: the next LIVE, caught-up node of the rotation. */
#define TDM_SWITCHOVER_NEXT UINT32_MAX
/* Defaults of the config's bounds, used when the adapter leaves them 0. */
#define TDM_SWITCHOVER_CATCH_UP_MS_DEFAULT 2000 /* Hold at most this long for the target. */
#define TDM_SWITCHOVER_HANDOVER_MS_DEFAULT 2000 /* Wait this long for HANDOVER_DONE. */
#define TDM_FAILOVER_FENCE_MS_DEFAULT      2000 /* Wait this long for every FENCED. */
/* failover_silence_ms defaults to 2 * handshake_ms: twice what a backup waits
 * before it says HELLO again to a primary that went quiet. */
/* Reports one step can produce: a command's answer plus a few outcomes. */
#define TDM_ACTIONS_REPORTS_MAX 4

enum tdm_report_kind {
    TDM_REPORT_SWITCHOVER = 1,
    TDM_REPORT_FAILOVER,
};

enum tdm_report_outcome {
    TDM_OUTCOME_STARTED = 1, /* Accepted: writes are held (switchover) or nodes probed. */
    TDM_OUTCOME_DONE,        /* The target acts as primary in epoch. */
    TDM_OUTCOME_REFUSED,     /* Nothing changed anywhere; refusal says why. */
    TDM_OUTCOME_ABANDONED,   /* Begun, then given up: refusal says why; epoch is the
                                epoch this node acts in now (a switchover's old
                                primary resumed there). */
    TDM_OUTCOME_DRY_RUN,     /* Failover --dry-run: what a promotion would do. */
};

/* One node as a failover's probe found it. */
struct tdm_report_node {
    bool answered;     /* FENCED arrived (always true for the target itself). */
    uint8_t role;      /* enum tdm_role it announced. */
    bool primary_seen; /* Its primary still answers it. */
    uint8_t refusal;   /* Its FENCED's refusal (0: accepted). */
    uint64_t epoch;
    uint64_t last_epoch;
    uint64_t last_lsn;
    uint64_t durable_lsn;
    uint64_t commit_lsn; /* The acknowledged LSN it heard of. */
};

/* Action: tell the operator (or the schedule) how a command went. Carried out
 * last, after the results; nothing waits for it. One command gets STARTED or
 * REFUSED (or DRY_RUN) at once, then DONE or ABANDONED once decided. */
struct tdm_report {
    enum tdm_report_kind kind;
    enum tdm_report_outcome outcome;
    uint32_t refusal;      /* enum tdm_refusal: REFUSED, ABANDONED, and DRY_RUN (what a
                              real run would refuse); 0 otherwise. */
    uint64_t request_id;   /* The command's, from its event. */
    uint32_t target_index; /* Switchover: the target; failover: this node. */
    uint32_t node_index;   /* The node the refusal is about; UINT32_MAX if none. */
    uint64_t epoch;        /* DONE: the new epoch; ABANDONED: the epoch acted in now;
                              DRY_RUN: the epoch a promotion would open. */
    uint64_t lsn;          /* Switchover: the handover LSN; failover: the target's
                              durable LSN. */
    uint64_t pause_ms;     /* Switchover DONE, ABANDONED: writes were held this long. */
    /* Failover: acknowledged LSNs a promotion could lose (DRY_RUN) or may have
     * lost (DONE, forced): risk_lsn_first..risk_lsn_last; 0, 0: none. */
    uint64_t risk_lsn_first;
    uint64_t risk_lsn_last;
    uint32_t node_count; /* Failover: nodes[] by node index (the target's own row too). */
    struct tdm_report_node nodes[TDM_REPLICA_NODES_MAX];
};

enum tdm_switch_phase {
    TDM_SWITCH_IDLE = 1,    /* No switchover here. */
    TDM_SWITCH_CATCH_UP,    /* Old primary: holding writes until the target holds all. */
    TDM_SWITCH_OFFER,       /* Old primary: persisting the history that names the target. */
    TDM_SWITCH_HANDOVER,    /* Old primary: HANDOVER sent, waiting for HANDOVER_DONE. */
    TDM_SWITCH_RESUME,      /* Old primary: persisting an epoch of its own (resume or
                               reopen), then acting again. */
    TDM_SWITCH_TAKEOVER,    /* Target: persisting the history HANDOVER brought. */
    TDM_SWITCH_UNCONFIRMED, /* Target: primary of the new epoch, holding writes until
                               the old primary says HELLO as its backup. */
    TDM_SWITCH_JOIN,        /* A restarted primary: holding writes in its epoch until a
                               first backup joins it there (PROTOCOL.md §4). */
};

/* A switchover in progress on this node (either end), and the rest of what
 * moves the primary role: a deferred step-down, a primary's lazy epoch. */
struct tdm_replica_switch {
    enum tdm_switch_phase phase;
    uint64_t request_id;
    bool command;          /* Old primary: asked by an operator (else scheduled). */
    uint32_t target_index; /* Old primary: the target. */
    uint32_t old_index;    /* Target: the old primary. */
    uint64_t hold_ms;      /* Old primary: when writes began to be held. */
    uint64_t deadline_ms;  /* End of the phase's bound. */
    uint64_t resend_ms;    /* Next HANDOVER / HANDOVER_DONE resend. */
    uint64_t from_epoch;   /* The old primary's acting epoch. */
    uint64_t new_epoch;    /* The target's epoch. */
    uint64_t lsn;          /* The handover LSN: the old primary's last, all acknowledged. */
    struct tdm_frame_chain_hash chain_hash; /* At lsn. */
    uint32_t refusal;              /* RESUME: why the switchover was abandoned (0: a reopen). */
    bool report_pending;           /* RESUME: report ABANDONED once acting again. */
    uint64_t pause_epoch;          /* A pause measured here, to record in the history at the */
    uint64_t pause_ms;             /* next persist (0 epoch: none). */
    bool lazy;                     /* Primary restarted with data: a new epoch once a backup
                                      says HELLO (PROTOCOL.md §4). */
    uint32_t follow_index;         /* A higher epoch's primary to follow once the disk work */
    uint64_t follow_epoch;         /* in flight is done (0 epoch: none). */
    uint64_t reopen_epoch;         /* An abandoned failover's epoch to move above once no
                                      write waits for the engine (0: none). */
    bool planted_persist_expected; /* Planted bug only (meson option planted_bug). */
};

enum tdm_failover_phase {
    TDM_FAILOVER_IDLE = 1, /* No failover here. */
    TDM_FAILOVER_PROBE,    /* Target: FENCE(PROBE) sent, collecting FENCED. */
    TDM_FAILOVER_FENCE,    /* Target: FENCE sent, waiting until every node moved. */
    TDM_FAILOVER_PERSIST,  /* Target: persisting its own history of the new epoch. */
};

/* A failover in progress on its target, and a fence this node is answering. */
struct tdm_replica_failover {
    enum tdm_failover_phase phase;
    uint64_t request_id;
    bool force;
    bool dry_run;
    uint64_t fence_id;    /* The current attempt's; strictly increasing. */
    uint64_t deadline_ms; /* End of the phase's bound. */
    uint64_t resend_ms;   /* Next FENCE resend to nodes that have not answered. */
    uint64_t new_epoch;
    uint32_t old_index; /* The old primary. */
    uint64_t risk_lsn_first;
    uint64_t risk_lsn_last;
    struct tdm_report_node nodes[TDM_REPLICA_NODES_MAX]; /* Probe answers. */
    bool fenced[TDM_REPLICA_NODES_MAX];                  /* FENCE answered, accepted. */
    /* A node's side: a FENCE accepted, its FENCED due once the history is
     * persisted (answer_epoch 0: none). */
    uint32_t answer_index;
    uint64_t answer_id;
    uint64_t answer_epoch;
};

#endif
