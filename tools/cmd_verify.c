/* tools/cmd_verify.c: "tandem verify --node DIR [--deep]": prove a node
 * directory intact now (docs/OPERATIONS.md "Verifying a node").
 *
 * 1. Resolve --node: a node directory (HOST:PORT needs replication and is
 *    refused by tdm_cmd_node_dir()).
 * 2. tandem_verify(DIR, DEEP?) takes the directory's lock, re-reads every
 *    segment from the medium and recomputes every checksum, the chain hash and
 *    every footer; with --deep it also proves the index equal to a rebuild
 *    from the log, rebuilding it if not.
 * 3. Print the summary on stdout (one "key value" line each, then one line
 *    per damaged range in tandem status's words) and one summary line on
 *    stderr, always.
 *
 * Exit status: 0 all intact (and, with --deep, the index equal to a rebuild);
 * 1 damage found, or the index differed (it was rebuilt: run verify again to
 * see it equal); 2 bad usage or an error that stopped the check (the
 * directory is locked by a tandemd, not a node directory, I/O error). */
#include "cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/base/assert.h"

static double verify_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void verify_print_index(const struct tandem_verify_report *report, bool deep)
{
    if (!deep) {
        printf("index       not checked (use --deep)\n");
    } else if (!report->index_checked) {
        printf("index       not checked: the log is damaged (repair it first)\n");
    } else if (report->index_equal) {
        printf("index       equal to a rebuild from the log (lsn %llu)\n",
               (unsigned long long)report->lsn_last);
    } else if (report->index_rebuilt) {
        printf("index       differed from a rebuild from the log: %s; rebuilt\n",
               report->index_difference);
    }
}

static void verify_print(const char *dir, const struct tandem_verify_report *report, bool deep)
{
    bool intact = report->damaged_count == 0;
    printf("verify      %s: %s\n", dir, intact ? "log intact" : "log DAMAGED");
    if (report->lsn_last == 0) {
        printf("log         empty, %u segment%s\n", report->segment_count,
               report->segment_count == 1 ? "" : "s");
    } else {
        printf("log         lsn %llu..%llu in %u segment%s (%u sealed)\n",
               (unsigned long long)report->lsn_first, (unsigned long long)report->lsn_last,
               report->segment_count, report->segment_count == 1 ? "" : "s", report->sealed_count);
    }
    printf("checked     %llu bytes of segments, %llu bytes read from the disk\n",
           (unsigned long long)report->segment_bytes, (unsigned long long)report->read_bytes);
    tdm_cmd_print_damaged(report->damaged, report->damaged_count);
    verify_print_index(report, deep);
}

int tdm_cmd_verify(int argc, char **argv)
{
    const char *addr = NULL;
    bool deep = false;
    const struct tdm_cmd_option options[] = {
        {"node", true, &addr, NULL},
        {"deep", false, NULL, &deep},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    const char *dir = NULL;
    exit_status = tdm_cmd_node_dir("verify", addr, &dir);
    if (exit_status >= 0) {
        return exit_status;
    }
    tdm_assert(dir != NULL);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct tandem_verify_report report;
    struct tandem_diag diag = {{0}};
    int rv = tandem_verify(dir, deep ? TANDEM_VERIFY_DEEP : 0, &report, &diag);
    if (rv != 0) {
        char what[TDM_CMD_PATH_SIZE + 16];
        snprintf(what, sizeof(what), "verify %s", dir);
        if (rv == TANDEM_ELOCKED && diag.message[0] == '\0') {
            snprintf(diag.message, sizeof(diag.message),
                     "stop the process that writes to it (tandemd or tandem append) first");
        }
        tdm_cmd_fail_code(what, rv, &diag);
        return TDM_CMD_EXIT_USAGE;
    }
    double seconds = verify_seconds_since(&start);
    verify_print(dir, &report, deep);
    bool intact = report.damaged_count == 0 && !report.index_rebuilt;
    char found[64] = "intact";
    if (report.damaged_count > 0) {
        snprintf(found, sizeof(found), "DAMAGED: %u range%s", report.damaged_count,
                 report.damaged_count == 1 ? "" : "s");
    }
    fprintf(stderr, "tandem: verify %s: %u segments, %.1f MB read in %.2f s: %s%s%s\n", dir,
            report.segment_count, (double)report.read_bytes / 1e6, seconds, found,
            report.index_rebuilt ? ", index differed and was rebuilt" : "",
            deep && report.index_equal ? ", index equal" : "");
    fflush(stdout);
    return intact ? TDM_CMD_EXIT_OK : TDM_CMD_EXIT_FAILED;
}
