/* tools/inspect.c: read a node's epoch history (DIR/epochs) and what its
 * quarantine holds (DIR/quarantine/) into the JSON documents of `tandem
 * history` and `tandem quarantine` (tools/inspect.h).
 *
 * Happy path (history):
 * 1. Read DIR/epochs (docs/FORMAT.md "Epoch history"): the magic line, then one
 *    entry per line, each checked as the adapter's reader checks it (fields,
 *    cause names of net/replica.h, an at-risk range, epochs strictly
 *    increasing, lsn_first >= 1 non-decreasing). No file on a replicated
 *    node: the history of a new cluster, (1, [replication] primary, 1, init).
 * 2. Scan the quarantine (below) and give each epoch the batches in quarantine
 *    that were written in it (a batch header carries its epoch); what matches
 *    no epoch, or could not be read, is listed apart.
 * Happy path (quarantine):
 * 1. List DIR/quarantine/ in name order. A name says where the bytes came from
 *    (docs/FORMAT.md "Recovery", engine/recover.c): <segment>.seg.<P>.torn (a
 *    torn tail cut at offset P), <segment>.seg.<P>.cut (a divergent tail cut
 *    at a fork point), <segment>.seg.torn / .cut (a whole segment file),
 *    <segment>.seg.<P>.damaged (a whole segment replaced by a repair,
 *    engine/repair.c; P is where its damage began).
 * 2. Walk each file batch by batch: header (magic, version, checksum), body
 *    (checksum, decompression, entry count). A whole segment starts with its
 *    64-byte header; a tail copied from a sealed segment ends with its footer.
 * 3. Count batches, records, LSN ranges per epoch; with export, decode each
 *    record and hand it on as a JSON Lines object with "lsn".
 * Failure modes: a DIR/epochs line that does not parse is TANDEM_ECORRUPT
 * naming the line. Bytes of a quarantine file that do not verify are an
 * unreadable range (offset, size, cause); the walk resumes at the next offset
 * where a batch header verifies. A file that cannot be opened or read is
 * listed with its error. Nothing is asserted on and nothing is written. */
#include "inspect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/batch.h"
#include "engine/codec.h"
#include "engine/segment.h"
#include "jsonl.h"
#include "net/proto.h"
#include "net/replica.h"

#define INSPECT_EPOCHS_MAX     128    /* Entries in DIR/epochs (docs/FORMAT.md). */
#define INSPECT_LINE_SIZE      256    /* Longest DIR/epochs line read. */
#define INSPECT_FILES_MAX      100000 /* Quarantine files listed. */
#define INSPECT_RESYNC_CHUNK   ((size_t)1 << 20)
#define INSPECT_MAGIC          "tandem-epochs 2"
#define INSPECT_MAGIC_V1       "tandem-epochs 1"
#define INSPECT_UNREADABLE_MAX 64 /* Ranges listed per file; the rest are counted. */

tdm_static_assert(INSPECT_EPOCHS_MAX == TDM_PROTO_HISTORY_MAX);

/* One epoch history entry as DIR/epochs holds it. */
struct inspect_epoch {
    uint64_t epoch;
    char primary[TDM_PROTO_NAME_SIZE_MAX + 1];
    uint64_t lsn_first;
    uint32_t cause;
    uint64_t time_ms;
    uint64_t pause_ms;
    uint64_t risk_lsn_first;
    uint64_t risk_lsn_last;
};

/* ---- DIR/epochs ----------------------------------------------------------------- */

static int inspect_path(char *out, size_t size, const char *dir, const char *name,
                        struct tdm_diag *diag)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        tdm_diag_printf(diag, "%s/%s: path too long", dir, name);
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Parse one entry line; NULL, or what is wrong with it (in why, or static). */
static const char *inspect_epoch_parse(const char *line, bool v1, struct inspect_epoch *e,
                                       char *why, size_t why_size)
{
    unsigned long long v[6] = {0};
    char cause[16] = "init";
    char rest[2];
    int n = v1 ? sscanf(line, "%llu %63s %llu %1s", &v[0], e->primary, &v[1], rest)
               : sscanf(line, "%llu %63s %llu %15s %llu %llu %llu %llu %1s", &v[0], e->primary,
                        &v[1], cause, &v[2], &v[3], &v[4], &v[5], rest);
    if (n != (v1 ? 3 : 8)) {
        return v1 ? "expected 3 fields: epoch, primary id, lsn_first"
                  : "expected 8 fields: epoch, primary id, lsn_first, cause, time_ms, "
                    "pause_ms, risk_first, risk_last";
    }
    if (!tdm_proto_name_valid(e->primary, strlen(e->primary))) {
        return "primary: not a node id";
    }
    if (!tdm_replica_cause_parse(cause, &e->cause)) {
        snprintf(why, why_size, "cause: unknown name '%s'", cause);
        return why;
    }
    e->epoch = v[0];
    e->lsn_first = v[1];
    e->time_ms = v[2];
    e->pause_ms = v[3];
    e->risk_lsn_first = v[4];
    e->risk_lsn_last = v[5];
    if (e->epoch == 0 || e->lsn_first == 0) {
        return "epoch and lsn_first must be >= 1";
    }
    if ((e->risk_lsn_first == 0) != (e->risk_lsn_last == 0) ||
        e->risk_lsn_first > e->risk_lsn_last) {
        return "LSNs at risk are not a range";
    }
    return NULL;
}

/* Read DIR/epochs into epochs[0..*count). Returns 0, -ENOENT (no file),
 * TANDEM_ECORRUPT naming the line, or -errno, with diag. */
static int inspect_epochs_read(const char *dir, struct inspect_epoch *epochs, uint32_t *count,
                               struct tdm_diag *diag)
{
    char path[4096];
    int rv = inspect_path(path, sizeof(path), dir, "epochs", diag);
    FILE *file = rv == 0 ? fopen(path, "r") : NULL;
    if (rv == 0 && file == NULL) {
        rv = -errno;
        tdm_diag_printf(diag, "open %s: %s", path, strerror(errno));
    }
    if (rv != 0) {
        return rv;
    }
    char line[INSPECT_LINE_SIZE];
    bool v1 = false;
    uint32_t line_number = 1;
    const char *bad = NULL;
    char why[64];
    if (fgets(line, sizeof(line), file) == NULL ||
        (strcmp(line, INSPECT_MAGIC "\n") != 0 &&
         !(v1 = strcmp(line, INSPECT_MAGIC_V1 "\n") == 0))) {
        bad = "not '" INSPECT_MAGIC "' or '" INSPECT_MAGIC_V1 "'";
    }
    *count = 0;
    while (bad == NULL && fgets(line, sizeof(line), file) != NULL) {
        line_number++;
        struct inspect_epoch *e = &epochs[*count];
        if (strchr(line, '\n') == NULL) {
            bad = "line too long or not newline-terminated";
        } else if (*count == INSPECT_EPOCHS_MAX) {
            bad = "more than 128 entries";
        } else if ((bad = inspect_epoch_parse(line, v1, e, why, sizeof(why))) == NULL &&
                   *count > 0) {
            if (e->epoch <= epochs[*count - 1].epoch) {
                bad = "epoch not above the previous entry's";
            } else if (e->lsn_first < epochs[*count - 1].lsn_first) {
                bad = "lsn_first below the previous entry's";
            }
        }
        *count += bad == NULL ? 1 : 0;
    }
    fclose(file);
    if (bad != NULL) {
        tdm_diag_printf(diag, "%s: line %" PRIu32 ": %s", path, line_number, bad);
        return TANDEM_ECORRUPT;
    }
    if (*count == 0) {
        tdm_diag_printf(diag, "%s: no entries", path);
        return TANDEM_ECORRUPT;
    }
    return 0;
}

/* ---- Quarantine files ------------------------------------------------------------ */

/* Where a quarantine file's bytes came from, from its name. */
struct inspect_origin {
    const char *reason;   /* "torn tail", "cut at a fork point", "damaged segment
                             replaced by a repair" or "unknown". */
    bool known;           /* The name is one engine/recover.c writes. */
    bool whole_segment;   /* The file is a whole segment (header first). */
    uint64_t segment_lsn; /* The segment it came from (known only). */
    uint64_t offset;      /* Offset in that segment of the file's first byte. */
};

static void inspect_origin_parse(const char *name, struct inspect_origin *origin)
{
    memset(origin, 0, sizeof(*origin));
    origin->reason = "unknown (not a name tandem writes)";
    char segment[TDM_SEGMENT_NAME_SIZE];
    size_t segment_size = strlen("00000000000000000000.seg");
    if (strlen(name) <= segment_size || name[segment_size] != '.') {
        return;
    }
    memcpy(segment, name, segment_size);
    segment[segment_size] = '\0';
    uint64_t lsn = 0;
    if (!tdm_segment_name_parse(segment, &lsn)) {
        return;
    }
    const char *rest = name + segment_size + 1;
    size_t digits = strspn(rest, "0123456789");
    uint64_t offset = 0;
    if (digits > 0 && digits <= 19 && rest[digits] == '.') {
        offset = strtoull(rest, NULL, 10);
        rest += digits + 1;
    } else if (digits > 0) {
        return;
    }
    /* A second file of the same origin got ".N" (tdm_log_quarantine_path). */
    char kind[16];
    size_t kind_size = strcspn(rest, ".");
    if (kind_size >= sizeof(kind) ||
        (rest[kind_size] == '.' &&
         (rest[kind_size + 1] == '\0' ||
          strspn(rest + kind_size + 1, "0123456789") != strlen(rest + kind_size + 1)))) {
        return;
    }
    memcpy(kind, rest, kind_size);
    kind[kind_size] = '\0';
    rest = kind;
    if (strcmp(rest, "torn") == 0) {
        origin->reason = "torn tail";
    } else if (strcmp(rest, "cut") == 0) {
        origin->reason = "cut at a fork point";
    } else if (strcmp(rest, "damaged") == 0 && digits > 0) {
        /* engine/repair.c: the whole damaged segment, replaced by a repair;
         * P is where its damage began, not where the file starts. */
        origin->reason = "damaged segment replaced by a repair";
        origin->known = true;
        origin->whole_segment = true;
        origin->segment_lsn = lsn;
        return;
    } else {
        return;
    }
    origin->known = true;
    origin->whole_segment = digits == 0;
    origin->segment_lsn = lsn;
    origin->offset = offset;
}

/* What the walk of one file hands on. */
struct inspect_walk_ops {
    /* A batch that verifies; raw is its decompressed body. Non-zero stops. */
    int (*batch)(void *data, const struct tdm_batch_header *header, const uint8_t *raw,
                 size_t raw_size);
    /* Bytes [offset, offset + size) of the file that do not verify. */
    void (*unreadable)(void *data, uint64_t offset, uint64_t size, const char *cause);
    void *data;
};

static int inspect_pread(int fd, void *buf, size_t size, uint64_t offset)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Whether bytes [from, size) of fd are all zero: the unwritten space of a
 * prepared segment (docs/FORMAT.md "Prepared segments"), not data. */
static int inspect_zero_rest(int fd, uint64_t from, uint64_t size, bool *zero)
{
    uint8_t *buf = tdm_malloc(INSPECT_RESYNC_CHUNK);
    if (buf == NULL) {
        return -ENOMEM;
    }
    *zero = true;
    for (uint64_t at = from; *zero && at < size;) {
        size_t n = size - at < INSPECT_RESYNC_CHUNK ? (size_t)(size - at) : INSPECT_RESYNC_CHUNK;
        int rv = inspect_pread(fd, buf, n, at);
        if (rv != 0) {
            tdm_free(buf);
            return rv;
        }
        for (size_t i = 0; i < n; i++) {
            if (buf[i] != 0) {
                *zero = false;
                break;
            }
        }
        at += n;
    }
    tdm_free(buf);
    return 0;
}

/* The first offset after from where a batch header verifies, or size. */
static int inspect_resync(int fd, uint64_t from, uint64_t size, uint64_t *next)
{
    uint8_t *buf = tdm_malloc(INSPECT_RESYNC_CHUNK + TDM_BATCH_HEADER_SIZE);
    if (buf == NULL) {
        return -ENOMEM;
    }
    *next = size;
    for (uint64_t at = from + 1; at + TDM_BATCH_HEADER_SIZE <= size;) {
        uint64_t want = size - at;
        size_t n = want < INSPECT_RESYNC_CHUNK + TDM_BATCH_HEADER_SIZE
                       ? (size_t)want
                       : INSPECT_RESYNC_CHUNK + TDM_BATCH_HEADER_SIZE;
        int rv = inspect_pread(fd, buf, n, at);
        if (rv != 0) {
            tdm_free(buf);
            return rv;
        }
        for (size_t i = 0; i + TDM_BATCH_HEADER_SIZE <= n; i++) {
            struct tdm_batch_header header;
            struct tdm_diag ignored = {{0}};
            if (buf[i] == 'B' &&
                tdm_batch_header_decode(buf + i, TDM_BATCH_HEADER_SIZE, &header, &ignored) == 0) {
                *next = at + i;
                tdm_free(buf);
                return 0;
            }
        }
        at += n - TDM_BATCH_HEADER_SIZE + 1;
    }
    tdm_free(buf);
    return 0;
}

/* Check and hand on the batch whose verified header is at offset. Returns the
 * bytes it takes, 0 when it runs past the end (reported), or a negative code. */
static int64_t inspect_walk_batch(int fd, uint64_t offset, uint64_t size,
                                  const struct tdm_batch_header *header,
                                  const struct inspect_walk_ops *ops)
{
    char cause[TDM_DIAG_SIZE + 64];
    tdm_assert(offset < size);
    tdm_assert(header->body_size <= TDM_BATCH_BODY_SIZE_MAX); /* Checked by the decoder. */
    uint64_t end = offset + TDM_BATCH_HEADER_SIZE + header->body_size;
    if (end > size) {
        snprintf(cause, sizeof(cause),
                 "batch of LSNs %" PRIu64 "-%" PRIu64 " ends past the end of the file (torn)",
                 header->lsn_first, tdm_batch_lsn_last(header));
        ops->unreadable(ops->data, offset, size - offset, cause);
        return 0;
    }
    uint8_t *body = tdm_malloc(header->body_size + 1);
    uint8_t *raw = tdm_malloc((size_t)header->raw_size + 1);
    int rv = body == NULL || raw == NULL ? -ENOMEM : 0;
    rv = rv != 0 ? rv : inspect_pread(fd, body, header->body_size, offset + TDM_BATCH_HEADER_SIZE);
    struct tdm_diag diag = {{0}};
    if (rv == 0) {
        int decoded = tdm_batch_body_decode(header, body, raw, header->raw_size, &diag);
        if (decoded == 0) {
            rv = ops->batch(ops->data, header, raw, header->raw_size);
        } else if (decoded == -ENOMEM) {
            rv = decoded;
        } else {
            snprintf(cause, sizeof(cause), "batch of LSNs %" PRIu64 "-%" PRIu64 ": %s",
                     header->lsn_first, tdm_batch_lsn_last(header), diag.message);
            ops->unreadable(ops->data, offset, end - offset, cause);
        }
    }
    tdm_free(body);
    tdm_free(raw);
    return rv != 0 ? rv : (int64_t)(end - offset);
}

/* Walk bytes [from, size) of fd as batches back to back (step 2). */
static int inspect_walk_batches(int fd, uint64_t from, uint64_t size,
                                const struct inspect_walk_ops *ops)
{
    tdm_assert(fd >= 0);
    tdm_assert(ops->batch != NULL && ops->unreadable != NULL);
    uint8_t buf[TDM_SEGMENT_FOOTER_SIZE > TDM_BATCH_HEADER_SIZE ? TDM_SEGMENT_FOOTER_SIZE
                                                                : TDM_BATCH_HEADER_SIZE];
    for (uint64_t offset = from; offset < size;) {
        uint64_t left = size - offset;
        struct tdm_diag diag = {{0}};
        int rv = inspect_pread(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf), offset);
        if (rv != 0) {
            return rv;
        }
        struct tdm_segment_footer footer;
        if (left == TDM_SEGMENT_FOOTER_SIZE &&
            tdm_segment_footer_decode(buf, &footer, &diag) == 0) {
            return 0; /* The footer of a sealed segment: not data. */
        }
        struct tdm_batch_header header;
        bool zero = false;
        bool bad = left >= TDM_BATCH_HEADER_SIZE &&
                   tdm_batch_header_decode(buf, TDM_BATCH_HEADER_SIZE, &header, &diag) != 0;
        if (left < TDM_BATCH_HEADER_SIZE || bad) {
            rv = inspect_zero_rest(fd, offset, size, &zero);
            if (rv != 0 || zero) {
                return rv;
            }
        }
        if (left < TDM_BATCH_HEADER_SIZE) {
            ops->unreadable(ops->data, offset, left, "ends inside a batch header (torn)");
            return 0;
        }
        if (bad) {
            uint64_t next = size;
            rv = inspect_resync(fd, offset, size, &next);
            if (rv != 0) {
                return rv;
            }
            ops->unreadable(ops->data, offset, next - offset, diag.message);
            offset = next;
            continue;
        }
        int64_t taken = inspect_walk_batch(fd, offset, size, &header, ops);
        if (taken <= 0) {
            return (int)taken;
        }
        offset += (uint64_t)taken;
    }
    return 0;
}

/* Walk one quarantine file. Returns 0, or -errno with diag (open, read). */
static int inspect_walk_file(const char *path, const struct inspect_origin *origin, uint64_t size,
                             const struct inspect_walk_ops *ops, struct tdm_diag *diag)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rv = -errno;
        tdm_diag_printf(diag, "open: %s", strerror(errno));
        return rv;
    }
    uint64_t from = 0;
    int rv = 0;
    uint8_t buf[TDM_SEGMENT_HEADER_SIZE];
    if (origin->whole_segment || (!origin->known && size >= TDM_SEGMENT_HEADER_SIZE)) {
        rv = size >= TDM_SEGMENT_HEADER_SIZE ? inspect_pread(fd, buf, sizeof(buf), 0) : 0;
        struct tdm_segment_header header;
        struct tdm_diag segment_diag = {{0}};
        if (rv == 0 && size < TDM_SEGMENT_HEADER_SIZE) {
            ops->unreadable(ops->data, 0, size, "ends inside the segment header (torn)");
            from = size;
        } else if (rv == 0 && tdm_segment_header_decode(buf, &header, &segment_diag) == 0) {
            from = TDM_SEGMENT_HEADER_SIZE;
        } else if (rv == 0 && origin->whole_segment) {
            ops->unreadable(ops->data, 0, TDM_SEGMENT_HEADER_SIZE, segment_diag.message);
            from = TDM_SEGMENT_HEADER_SIZE;
        }
    }
    rv = rv != 0 ? rv : inspect_walk_batches(fd, from, size, ops);
    close(fd);
    if (rv < 0 && rv != -ENOMEM) {
        tdm_diag_printf(diag, "read: %s", strerror(-rv));
    }
    return rv;
}

static int inspect_name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in DIR/quarantine/, sorted. Returns 0 (none: *count 0), or
 * -errno with diag. */
static int inspect_names(const char *qdir, char ***names, size_t *count, struct tdm_diag *diag)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(qdir);
    if (d == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        int rv = -errno;
        tdm_diag_printf(diag, "open %s: %s", qdir, strerror(errno));
        return rv;
    }
    int rv = 0;
    size_t capacity = 0;
    struct dirent *entry;
    while (rv == 0 && (entry = readdir(d)) != NULL) {
        if (entry->d_name[0] == '.' || *count == INSPECT_FILES_MAX) {
            continue;
        }
        if (*count == capacity) {
            capacity = capacity == 0 ? 16 : capacity * 2;
            char **grown = tdm_realloc(*names, capacity * sizeof(*grown));
            rv = grown == NULL ? -ENOMEM : 0;
            *names = grown != NULL ? grown : *names;
        }
        char *copy = rv == 0 ? strdup(entry->d_name) : NULL;
        if (rv == 0 && copy == NULL) {
            rv = -ENOMEM;
        }
        if (rv == 0) {
            (*names)[(*count)++] = copy;
        }
    }
    closedir(d);
    if (*count > 0) {
        qsort(*names, *count, sizeof(**names), inspect_name_compare);
    }
    return rv;
}

static void inspect_names_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    tdm_free(names);
}

/* ---- The listing ------------------------------------------------------------------ */

/* What the walk of one file counts (the listing's visitor). */
struct inspect_file_count {
    json_t *epochs;     /* [{"epoch", "lsn_first", "lsn_last", "batches", "records"}]. */
    json_t *unreadable; /* [{"offset", "bytes", "cause"}]. */
    uint64_t unreadable_count;
    uint64_t batches;
    uint64_t records;
    uint64_t lsn_first; /* 0: no batch. */
    uint64_t lsn_last;
    int failed; /* -ENOMEM from jansson. */
};

static int inspect_set_u64(json_t *object, const char *key, uint64_t value)
{
    return json_object_set_new(object, key, json_integer((json_int_t)value));
}

static int count_batch_cb(void *data, const struct tdm_batch_header *header, const uint8_t *raw,
                          size_t raw_size)
{
    struct inspect_file_count *c = data;
    (void)raw;
    (void)raw_size;
    tdm_assert(header->record_count >= 1); /* tdm_batch_header_decode() checked it. */
    tdm_assert(c->epochs != NULL);
    uint64_t last = tdm_batch_lsn_last(header);
    c->batches++;
    c->records += header->record_count;
    c->lsn_first =
        c->lsn_first == 0 || header->lsn_first < c->lsn_first ? header->lsn_first : c->lsn_first;
    c->lsn_last = last > c->lsn_last ? last : c->lsn_last;
    size_t n = json_array_size(c->epochs);
    json_t *group = n > 0 ? json_array_get(c->epochs, n - 1) : NULL;
    if (group != NULL &&
        (uint64_t)json_integer_value(json_object_get(group, "epoch")) == header->epoch &&
        (uint64_t)json_integer_value(json_object_get(group, "lsn_last")) + 1 == header->lsn_first) {
        inspect_set_u64(group, "lsn_last", last);
        inspect_set_u64(group, "batches",
                        (uint64_t)json_integer_value(json_object_get(group, "batches")) + 1);
        inspect_set_u64(group, "records",
                        (uint64_t)json_integer_value(json_object_get(group, "records")) +
                            header->record_count);
        return 0;
    }
    group = json_pack("{s:I, s:I, s:I, s:i, s:I}", "epoch", (json_int_t)header->epoch, "lsn_first",
                      (json_int_t)header->lsn_first, "lsn_last", (json_int_t)last, "batches", 1,
                      "records", (json_int_t)header->record_count);
    if (group == NULL || json_array_append_new(c->epochs, group) != 0) {
        c->failed = -ENOMEM;
    }
    return 0;
}

static void count_unreadable_cb(void *data, uint64_t offset, uint64_t size, const char *cause)
{
    struct inspect_file_count *c = data;
    c->unreadable_count++;
    if (c->unreadable_count > INSPECT_UNREADABLE_MAX) {
        return;
    }
    json_t *range = json_pack("{s:I, s:I, s:s}", "offset", (json_int_t)offset, "bytes",
                              (json_int_t)size, "cause", cause);
    if (range == NULL || json_array_append_new(c->unreadable, range) != 0) {
        c->failed = -ENOMEM;
    }
}

/* "2026-11-28T03:57:02.5Z" from a stat time. */
static void inspect_time_text(const struct stat *st, char *buf, size_t size)
{
    int64_t ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    tdm_time_format(ns, buf, size);
}

/* One "files" entry of the listing. Returns NULL on -ENOMEM. */
static json_t *inspect_file_entry(const char *qdir, const char *name)
{
    struct inspect_origin origin;
    inspect_origin_parse(name, &origin);
    json_t *entry = json_pack("{s:s, s:s, s:b}", "file", name, "reason", origin.reason,
                              "whole_segment", origin.whole_segment);
    struct inspect_file_count c = {.epochs = json_array(), .unreadable = json_array()};
    if (entry == NULL || c.epochs == NULL || c.unreadable == NULL) {
        json_decref(entry);
        json_decref(c.epochs);
        json_decref(c.unreadable);
        return NULL;
    }
    json_object_set_new(entry, "segment",
                        origin.known ? json_integer((json_int_t)origin.segment_lsn) : json_null());
    inspect_set_u64(entry, "offset", origin.offset);
    char path[4096];
    struct tdm_diag diag = {{0}};
    struct stat st;
    int rv = inspect_path(path, sizeof(path), qdir, name, &diag);
    if (rv == 0 && stat(path, &st) != 0) {
        rv = -errno;
        tdm_diag_printf(&diag, "stat: %s", strerror(errno));
    }
    if (rv == 0 && !S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        tdm_diag_printf(&diag, "not a regular file");
    }
    if (rv == 0) {
        char time[40];
        inspect_time_text(&st, time, sizeof(time));
        inspect_set_u64(entry, "bytes", (uint64_t)st.st_size);
        json_object_set_new(entry, "time", json_string(time));
        struct inspect_walk_ops ops = {count_batch_cb, count_unreadable_cb, &c};
        rv = inspect_walk_file(path, &origin, (uint64_t)st.st_size, &ops, &diag);
    }
    inspect_set_u64(entry, "batches", c.batches);
    inspect_set_u64(entry, "records", c.records);
    json_object_set_new(entry, "lsn_first",
                        c.batches > 0 ? json_integer((json_int_t)c.lsn_first) : json_null());
    json_object_set_new(entry, "lsn_last",
                        c.batches > 0 ? json_integer((json_int_t)c.lsn_last) : json_null());
    json_object_set_new(entry, "epochs", c.epochs);
    json_object_set_new(entry, "unreadable", c.unreadable);
    inspect_set_u64(entry, "unreadable_count", c.unreadable_count);
    json_object_set_new(entry, "error", rv != 0 ? json_string(diag.message) : json_null());
    if (rv == -ENOMEM || c.failed != 0) {
        json_decref(entry);
        return NULL;
    }
    return entry;
}

static uint64_t inspect_get_u64(const json_t *object, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(object, key));
}

int tdm_inspect_quarantine(const struct tdm_inspect_node *node, json_t **out, struct tdm_diag *diag)
{
    tdm_assert(node->dir != NULL);
    char qdir[4096];
    char **names = NULL;
    size_t count = 0;
    int rv = inspect_path(qdir, sizeof(qdir), node->dir, "quarantine", diag);
    rv = rv != 0 ? rv : inspect_names(qdir, &names, &count, diag);
    json_t *files = rv == 0 ? json_array() : NULL;
    rv = rv == 0 && files == NULL ? -ENOMEM : rv;
    uint64_t totals[4] = {0}; /* bytes, batches, records, unreadable. */
    for (size_t i = 0; rv == 0 && i < count; i++) {
        json_t *entry = inspect_file_entry(qdir, names[i]);
        if (entry == NULL || json_array_append_new(files, entry) != 0) {
            rv = -ENOMEM;
            break;
        }
        totals[0] += inspect_get_u64(entry, "bytes");
        totals[1] += inspect_get_u64(entry, "batches");
        totals[2] += inspect_get_u64(entry, "records");
        totals[3] += inspect_get_u64(entry, "unreadable_count") +
                     (json_is_null(json_object_get(entry, "error")) ? 0 : 1);
    }
    inspect_names_free(names, count);
    if (rv == 0) {
        *out = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I}", "node", node->id, "files", files,
                         "file_count", (json_int_t)count, "bytes", (json_int_t)totals[0], "batches",
                         (json_int_t)totals[1], "records", (json_int_t)totals[2], "unreadable",
                         (json_int_t)totals[3]);
        files = NULL;
        rv = *out == NULL ? -ENOMEM : 0;
    }
    json_decref(files);
    if (rv == -ENOMEM) {
        tdm_diag_printf(diag, "out of memory");
    }
    return rv;
}

/* ---- Export ----------------------------------------------------------------------- */

struct inspect_export {
    tdm_inspect_line_cb line;
    void *data;
    uint64_t skipped;
};

static int export_batch_cb(void *data, const struct tdm_batch_header *header, const uint8_t *raw,
                           size_t raw_size)
{
    struct inspect_export *x = data;
    tdm_assert(x->line != NULL);
    tdm_assert(header->raw_size == raw_size);
    size_t offset = 0;
    const uint8_t *bytes;
    size_t size;
    for (uint64_t lsn = header->lsn_first;
         tdm_batch_next(raw, raw_size, &offset, &bytes, &size) == 1; lsn++) {
        struct tandem_record record;
        struct tdm_diag diag = {{0}};
        if (tdm_codec_decode(bytes, size, &record, &diag) != 0) {
            x->skipped++; /* The listing counts the batch; its record cannot be shown. */
            continue;
        }
        char *text = NULL;
        size_t text_size = 0;
        int rv = tdm_jsonl_format(&record, lsn, &text, &text_size);
        rv = rv != 0 ? rv : x->line(x->data, text, text_size);
        tdm_free(text);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static void export_unreadable_cb(void *data, uint64_t offset, uint64_t size, const char *cause)
{
    struct inspect_export *x = data;
    (void)offset;
    (void)size;
    (void)cause;
    x->skipped++;
}

int tdm_inspect_export(const struct tdm_inspect_node *node, tdm_inspect_line_cb line, void *data,
                       uint64_t *skipped_count, struct tdm_diag *diag)
{
    tdm_assert(node->dir != NULL);
    tdm_assert(line != NULL);
    char qdir[4096];
    char **names = NULL;
    size_t count = 0;
    int rv = inspect_path(qdir, sizeof(qdir), node->dir, "quarantine", diag);
    rv = rv != 0 ? rv : inspect_names(qdir, &names, &count, diag);
    struct inspect_export x = {.line = line, .data = data};
    struct inspect_walk_ops ops = {export_batch_cb, export_unreadable_cb, &x};
    for (size_t i = 0; rv == 0 && i < count; i++) {
        char path[4096];
        struct stat st;
        struct inspect_origin origin;
        struct tdm_diag file_diag = {{0}};
        inspect_origin_parse(names[i], &origin);
        if (inspect_path(path, sizeof(path), qdir, names[i], diag) != 0 || stat(path, &st) != 0 ||
            !S_ISREG(st.st_mode)) {
            x.skipped++;
            continue;
        }
        rv = inspect_walk_file(path, &origin, (uint64_t)st.st_size, &ops, &file_diag);
        if (rv < 0 && rv != -ENOMEM && file_diag.message[0] != '\0') {
            x.skipped++; /* Unreadable file: listed with its error. */
            rv = 0;
        }
    }
    inspect_names_free(names, count);
    *skipped_count = x.skipped;
    return rv;
}

/* ---- The history document ---------------------------------------------------------- */

/* Give each epoch of history its quarantined batches; the rest go to other. */
static int inspect_attribute(json_t *epochs, const json_t *listing, json_t *other)
{
    size_t i;
    json_t *file;
    json_array_foreach(json_object_get(listing, "files"), i, file)
    {
        const char *name = json_string_value(json_object_get(file, "file"));
        size_t j;
        json_t *group;
        bool placed = false;
        json_array_foreach(json_object_get(file, "epochs"), j, group)
        {
            uint64_t epoch = inspect_get_u64(group, "epoch");
            json_t *target = NULL;
            size_t k;
            json_t *e;
            json_array_foreach(epochs, k, e)
            {
                target = inspect_get_u64(e, "epoch") == epoch ? e : target;
            }
            json_t *item =
                json_pack("{s:s, s:I, s:I, s:I, s:I}", "file", name, "epoch", (json_int_t)epoch,
                          "lsn_first", json_integer_value(json_object_get(group, "lsn_first")),
                          "lsn_last", json_integer_value(json_object_get(group, "lsn_last")),
                          "records", json_integer_value(json_object_get(group, "records")));
            json_t *into = target != NULL ? json_object_get(target, "quarantined") : other;
            if (item == NULL || json_array_append_new(into, item) != 0) {
                return -ENOMEM;
            }
            placed = true;
        }
        if (!placed || inspect_get_u64(file, "unreadable_count") > 0 ||
            !json_is_null(json_object_get(file, "error"))) {
            json_t *item = json_pack("{s:s, s:I, s:O}", "file", name, "unreadable",
                                     (json_int_t)inspect_get_u64(file, "unreadable_count"), "error",
                                     json_object_get(file, "error"));
            if (item == NULL || json_array_append_new(other, item) != 0) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

static json_t *inspect_epoch_json(const struct inspect_epoch *e)
{
    char time[40] = "";
    if (e->time_ms != 0) {
        tdm_time_format((int64_t)e->time_ms * 1000000, time, sizeof(time));
    }
    json_t *risk = e->risk_lsn_first == 0
                       ? json_null()
                       : json_pack("{s:I, s:I}", "lsn_first", (json_int_t)e->risk_lsn_first,
                                   "lsn_last", (json_int_t)e->risk_lsn_last);
    return json_pack("{s:I, s:s, s:I, s:s, s:o, s:I, s:o, s:[]}", "epoch", (json_int_t)e->epoch,
                     "primary", e->primary, "lsn_first", (json_int_t)e->lsn_first, "cause",
                     tdm_replica_cause_name(e->cause), "time",
                     e->time_ms != 0 ? json_string(time) : json_null(), "pause_ms",
                     (json_int_t)e->pause_ms, "at_risk", risk, "quarantined");
}

int tdm_inspect_history(const struct tdm_inspect_node *node, json_t **out, struct tdm_diag *diag)
{
    tdm_assert(node->dir != NULL);
    struct inspect_epoch *epochs = tdm_calloc(INSPECT_EPOCHS_MAX, sizeof(*epochs));
    if (epochs == NULL) {
        tdm_diag_printf(diag, "out of memory");
        return -ENOMEM;
    }
    uint32_t count = 0;
    int rv = inspect_epochs_read(node->dir, epochs, &count, diag);
    if (rv == -ENOENT && !node->replicated) {
        tdm_diag_printf(diag, "%s is a standalone node: it has no replication history", node->dir);
        rv = TANDEM_ENOTFOUND;
    } else if (rv == -ENOENT) { /* A new cluster: the first primary acts in epoch 1. */
        memset(diag, 0, sizeof(*diag));
        epochs[0] = (struct inspect_epoch){.epoch = 1, .lsn_first = 1};
        snprintf(epochs[0].primary, sizeof(epochs[0].primary), "%s", node->primary);
        rv = tdm_replica_cause_parse("init", &epochs[0].cause) ? 0 : TANDEM_ECORRUPT;
        count = 1;
    }
    json_t *list = json_array();
    json_t *other = json_array();
    json_t *listing = NULL;
    rv = rv == 0 && (list == NULL || other == NULL) ? -ENOMEM : rv;
    for (uint32_t i = 0; rv == 0 && i < count; i++) {
        json_t *e = inspect_epoch_json(&epochs[i]);
        rv = e == NULL || json_array_append_new(list, e) != 0 ? -ENOMEM : 0;
    }
    rv = rv != 0 ? rv : tdm_inspect_quarantine(node, &listing, diag);
    rv = rv != 0 ? rv : inspect_attribute(list, listing, other);
    if (rv == 0) {
        *out = json_pack("{s:s, s:O, s:O}", "node", node->id, "epochs", list, "quarantine_other",
                         other);
        rv = *out == NULL ? -ENOMEM : 0;
    }
    json_decref(list);
    json_decref(other);
    json_decref(listing);
    tdm_free(epochs);
    if (rv == -ENOMEM) {
        tdm_diag_printf(diag, "out of memory");
    }
    return rv;
}
