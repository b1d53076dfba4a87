/* tests/sim/sim_main.c: the cluster simulator's command line (STYLE B8).
 *
 *   sim --seeds N [--start S]   run seeds S .. S+N-1 (S defaults to a fixed 1)
 *   sim --seed S [--verbose]    replay one seed, with a readable event trace
 *   --unchecked-reads            reads skip their checksum checks (the I1
 *                                invariant must then fail)
 *   --expect TEXT                succeed only if some seed fails with TEXT in
 *                                its reason (proves an invariant can fail);
 *                                other failures go on to the next seed
 *
 * Each seed is a whole simulated cluster run (tests/sim/sim.c). The first
 * failing seed stops the run: its reason, the seed and the command that
 * replays it are printed, and the exit status is 1. An assertion inside a
 * replica aborts the process; the hook below prints the seed first. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/assert.h"
#include "sim.h"

static uint64_t sim_current_seed;

static void sim_assert_hook(const char *expr, const char *file, int line)
{
    fprintf(stderr, "sim: seed %" PRIu64 ": assertion %s failed at %s:%d\n", sim_current_seed, expr,
            file, line);
    fprintf(stderr, "replay: build/tests/sim --seed %" PRIu64 " --verbose\n", sim_current_seed);
}

static int usage(void)
{
    fprintf(stderr, "usage: sim --seeds N [--start S] | sim --seed S [--verbose]"
                    " [--unchecked-reads] [--expect TEXT]\n");
    return 2;
}

static bool parse_u64(const char *text, uint64_t *value)
{
    char *end = NULL;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (end == text || *end != '\0') {
        return false;
    }
    *value = (uint64_t)parsed;
    return true;
}

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 0;
    uint64_t start = 1;
    uint64_t seed = 0;
    bool one = false;
    bool verbose = false;
    const char *expect = NULL;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--seeds") == 0 && has_value && parse_u64(argv[i + 1], &seeds)) {
            i++;
        } else if (strcmp(argv[i], "--start") == 0 && has_value && parse_u64(argv[i + 1], &start)) {
            i++;
        } else if (strcmp(argv[i], "--seed") == 0 && has_value && parse_u64(argv[i + 1], &seed)) {
            one = true;
            i++;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--unchecked-reads") == 0) {
            sim_reads_unchecked(true);
        } else if (strcmp(argv[i], "--expect") == 0 && has_value) {
            expect = argv[++i];
        } else {
            return usage();
        }
    }
    if (one) {
        start = seed;
        seeds = 1;
    } else if (seeds == 0) {
        return usage();
    }
    tdm_assert_hook_set(sim_assert_hook);
    char message[512];
    uint64_t steps_total = 0;
    double began = seconds_now();
    for (uint64_t s = start; s < start + seeds; s++) {
        sim_current_seed = s;
        uint64_t steps = 0;
        if (sim_run(s, verbose, message, sizeof(message), &steps) != 0) {
            printf("sim: seed %" PRIu64 " FAILED: %s\n", s, message);
            if (expect != NULL) {
                if (strstr(message, expect) != NULL) {
                    printf("sim: the expected failure found\n");
                    return 0;
                }
                continue; /* Another invariant failed first: try the next seed. */
            }
            printf("replay: build/tests/sim --seed %" PRIu64 " --verbose\n", s);
            fflush(stdout);
            return 1;
        }
        steps_total += steps;
    }
    if (expect != NULL) {
        printf("sim: no seed failed with \"%s\"\n", expect);
        return 1;
    }
    double elapsed = seconds_now() - began;
    struct sim_stats stats;
    sim_stats_get(&stats);
    printf("sim: writes acknowledged %" PRIu64 " (forwarded %" PRIu64 "), failed %" PRIu64
           "; crashes %" PRIu64 ", partitions %" PRIu64 ", cuts %" PRIu64 " (%" PRIu64
           " batches quarantined), catch-up ranges %" PRIu64 "\n",
           stats.writes_acked, stats.writes_forwarded_acked, stats.writes_failed, stats.crashes,
           stats.partitions, stats.cuts, stats.quarantined, stats.catch_up_ranges);
    printf("sim: verification: %" PRIu64 " chain hash reads, %" PRIu64
           " verified claims, no mismatch\n",
           stats.verify_reads, stats.verify_claims);
    printf("sim: switchovers %" PRIu64 " done, %" PRIu64 " refused, %" PRIu64
           " abandoned; failovers %" PRIu64 " done (%" PRIu64 " forced), %" PRIu64
           " refused, %" PRIu64 " abandoned, %" PRIu64 " dry runs\n",
           stats.switchovers_done, stats.switchovers_refused, stats.switchovers_abandoned,
           stats.failovers_done, stats.failovers_forced, stats.failovers_refused,
           stats.failovers_abandoned, stats.failovers_dry_run);
    printf("sim: storage corruption: %" PRIu64 " bits flipped in sealed batches, %" PRIu64
           " repaired; %" PRIu64 " APPEND ranges and %" PRIu64
           " chain hash reads refused (checksum); queries %" PRIu64 " served, %" PRIu64
           " refused\n",
           stats.damaged, stats.repaired, stats.ships_refused, stats.verify_reads_refused,
           stats.queries_served, stats.queries_refused);
    printf("sim: %" PRIu64 " seeds passed (%" PRIu64 " .. %" PRIu64 "), %" PRIu64
           " steps, %.1f s, %.0f seeds/s\n",
           seeds, start, start + seeds - 1, steps_total, elapsed,
           elapsed > 0 ? (double)seeds / elapsed : 0.0);
    return 0;
}
