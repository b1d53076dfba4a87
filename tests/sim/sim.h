/* tests/sim/sim.h: a deterministic cluster of real tdm_replicas over a
 * simulated network and simulated disks, driven by one seed (STYLE B8,
 * RELIABILITY S7). See sim.c for the model and the invariants. */
#ifndef TDM_TESTS_SIM_SIM_H
#define TDM_TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Totals over every seed run so far: evidence that the faults and the
 * protocol's branches were exercised. */
struct sim_stats {
    uint64_t writes_acked;
    uint64_t writes_forwarded_acked;
    uint64_t writes_failed;
    uint64_t crashes;
    uint64_t partitions;
    uint64_t cuts;            /* Divergent tails cut into quarantine. */
    uint64_t quarantined;     /* Batches cut. */
    uint64_t catch_up_ranges; /* APPENDs of a range older than the primary's ring. */
    uint64_t verify_reads;    /* Chain hash reads (PROTOCOL.md §9). */
    uint64_t verify_claims;   /* Fresh "verified through n" claims, n >= 1. */
    /* Switchover and failover outcomes (PROTOCOL.md §8), as reported. */
    uint64_t switchovers_done;
    uint64_t switchovers_refused;
    uint64_t switchovers_abandoned;
    uint64_t failovers_done;
    uint64_t failovers_refused;
    uint64_t failovers_abandoned;
    uint64_t failovers_dry_run;
    uint64_t failovers_forced; /* Of failovers_done: forced (loss checks end there). */
    /* Storage corruption (PROTOCOL.md §9.5). */
    uint64_t damaged;              /* Bits flipped in sealed batches. */
    uint64_t repaired;             /* Damaged batches given an intact copy's bytes. */
    uint64_t ships_refused;        /* APPEND ranges not sent: a batch failed its checksum. */
    uint64_t verify_reads_refused; /* Chain hash reads failed the same way. */
    uint64_t queries_served;
    uint64_t queries_refused;
};

void sim_stats_get(struct sim_stats *stats);

/* true: reads skip their checksum checks and return damaged bytes as they are
 * (`sim --unchecked-reads`), so that the I1 invariant must fail. */
void sim_reads_unchecked(bool unchecked);

/* Run one seed. verbose prints a readable event trace on stdout. Returns 0
 * if every invariant held, else 1 with the reason in message. */
int sim_run(uint64_t seed, bool verbose, char *message, size_t message_size, uint64_t *steps);

#endif
