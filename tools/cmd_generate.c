/* tools/cmd_generate.c: "tandem generate [--seed S] [--count N] [--customers C]",
 * a developer command that prints synthetic records for demos and tests.
 *
 * Happy path:
 * 1. Seed the generator (tools/gen.h) with S and C customers.
 * 2. Print the customer records of customers 1..C, then N message records,
 *    each formatted by tdm_jsonl_format() as one JSON Lines object (without
 *    "lsn"), so that the output is valid input of "tandem append".
 * The same S, N and C always print the same bytes.
 * Failure modes: a bad number (exit 2); running out of memory or a failed
 * write to stdout (exit 1). A closed pipe ends the command by SIGPIPE, as it
 * does for any Unix filter. */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "gen.h"
#include "jsonl.h"

#define GENERATE_SEED_DEFAULT       1
#define GENERATE_COUNT_DEFAULT      1000
#define GENERATE_CUSTOMERS_DEFAULT  100
#define GENERATE_CUSTOMERS_MAX      10000000u
#define GENERATE_STDOUT_BUFFER_SIZE (256u * 1024u)

static int generate_print(const struct tandem_record *record)
{
    char *text = NULL;
    size_t size = 0;
    int rv = tdm_jsonl_format(record, 0, &text, &size);
    if (rv != 0) {
        return rv;
    }
    tdm_assert(text != NULL);
    fwrite(text, 1, size, stdout);
    fputc('\n', stdout);
    tdm_free(text);
    return 0;
}

/* Parse the option values. Returns -1 to go on, else the exit status. */
static int generate_check(const char *seed_text, const char *count_text, const char *customers_text,
                          uint64_t *seed, uint64_t *count, uint32_t *customers)
{
    if (seed_text != NULL && tdm_cmd_parse_u64(seed_text, seed) != 0) {
        tdm_cmd_fail("generate: --seed '%s': not a number", seed_text);
        return TDM_CMD_EXIT_USAGE;
    }
    if (count_text != NULL && tdm_cmd_parse_u64(count_text, count) != 0) {
        tdm_cmd_fail("generate: --count '%s': not a number", count_text);
        return TDM_CMD_EXIT_USAGE;
    }
    if (customers_text != NULL && (tdm_cmd_parse_u32(customers_text, customers) != 0 ||
                                   *customers == 0 || *customers > GENERATE_CUSTOMERS_MAX)) {
        tdm_cmd_fail("generate: --customers '%s': not a number from 1 to %u", customers_text,
                     GENERATE_CUSTOMERS_MAX);
        return TDM_CMD_EXIT_USAGE;
    }
    return -1;
}

int tdm_cmd_generate(int argc, char **argv)
{
    const char *seed_text = NULL;
    const char *count_text = NULL;
    const char *customers_text = NULL;
    const struct tdm_cmd_option options[] = {
        {"seed", true, &seed_text, NULL},
        {"count", true, &count_text, NULL},
        {"customers", true, &customers_text, NULL},
        {NULL, false, NULL, NULL},
    };
    int exit_status = tdm_cmd_parse(argc, argv, options, NULL, 0, NULL);
    if (exit_status >= 0) {
        return exit_status;
    }
    uint64_t seed = GENERATE_SEED_DEFAULT;
    uint64_t count = GENERATE_COUNT_DEFAULT;
    uint32_t customers = GENERATE_CUSTOMERS_DEFAULT;
    exit_status = generate_check(seed_text, count_text, customers_text, &seed, &count, &customers);
    if (exit_status >= 0) {
        return exit_status;
    }
    static char stdout_buffer[GENERATE_STDOUT_BUFFER_SIZE];
    setvbuf(stdout, stdout_buffer, _IOFBF, sizeof(stdout_buffer));
    struct tdm_gen gen;
    tdm_gen_init(&gen, seed, customers);
    int rv = 0;
    for (uint32_t id = 1; id <= customers && rv == 0; id++) {
        struct tandem_record record;
        tdm_gen_customer(&gen, id, &record);
        rv = generate_print(&record);
    }
    for (uint64_t i = 0; i < count && rv == 0; i++) {
        struct tandem_record record;
        tdm_gen_message(&gen, &record);
        rv = generate_print(&record);
    }
    if (rv != 0) {
        tdm_cmd_fail_code("generate", rv, NULL);
        return TDM_CMD_EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tdm_cmd_fail("generate: write to stdout failed");
        return TDM_CMD_EXIT_FAILED;
    }
    return TDM_CMD_EXIT_OK;
}
