/* net/risk.c: the count, per customer, of the records a failover may lose
 * (net/risk.h). */
#include "net/risk.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "engine/base/alloc.h"
#include "engine/base/assert.h"
#include "engine/batch.h"
#include "engine/codec.h"

void tdm_risk_init(struct tdm_risk *risk, uint64_t lsn_first, uint64_t lsn_last)
{
    tdm_assert(lsn_first >= 1 && lsn_first <= lsn_last);
    memset(risk, 0, sizeof(*risk));
    risk->lsn_first = lsn_first;
    risk->lsn_last = lsn_last;
    risk->count_last =
        lsn_last - lsn_first >= TDM_RISK_LSNS_MAX ? lsn_first + TDM_RISK_LSNS_MAX - 1 : lsn_last;
    risk->next_lsn = lsn_first;
}

void tdm_risk_count(struct tdm_risk *risk, const struct tandem_record *record)
{
    uint32_t customer = record->type == TANDEM_RECORD_MESSAGE ? record->message.customer_id
                                                              : record->customer.customer_id;
    risk->records++;
    risk->next_lsn++;
    for (uint32_t i = 0; i < risk->customer_count; i++) {
        if (risk->customers[i] == customer) {
            risk->customer_records[i]++;
            return;
        }
    }
    if (risk->customer_count < TDM_RISK_CUSTOMERS_MAX) {
        risk->customers[risk->customer_count] = customer;
        risk->customer_records[risk->customer_count++] = 1;
    } else {
        risk->other_records++;
    }
}

/* Decode every record of raw (verified entries) from risk->next_lsn through
 * risk->count_last into records[]; returns how many, or a negative code. */
static int risk_decode(const struct tdm_risk *risk, const struct tdm_batch_header *h,
                       const uint8_t *raw, struct tandem_record *records, struct tdm_diag *diag)
{
    size_t offset = 0;
    const uint8_t *entry = NULL;
    size_t entry_size = 0;
    int n = 0;
    for (uint64_t lsn = h->lsn_first; lsn <= tdm_batch_lsn_last(h); lsn++) {
        int more = tdm_batch_next(raw, h->raw_size, &offset, &entry, &entry_size);
        tdm_assert(more == 1); /* tdm_batch_body_decode checked the entries. */
        if (lsn < risk->next_lsn || lsn > risk->count_last) {
            continue;
        }
        int rv = tdm_codec_decode(entry, entry_size, &records[n], diag);
        if (rv != 0) {
            tdm_diag_wrapf(diag, "LSN %" PRIu64, lsn);
            return rv;
        }
        n++;
    }
    return n;
}

int tdm_risk_count_batch(struct tdm_risk *risk, const uint8_t *bytes, size_t size,
                         struct tdm_diag *diag)
{
    struct tdm_batch_header h;
    int rv = tdm_batch_header_decode(bytes, size, &h, diag);
    if (rv == 0 && size != TDM_BATCH_HEADER_SIZE + (size_t)h.body_size) {
        rv = TDM_CORRUPT(diag, "batch %" PRIu64 ": %zu bytes, header says %u", h.lsn_first, size,
                         TDM_BATCH_HEADER_SIZE + h.body_size);
    }
    if (rv == 0 && (h.lsn_first > risk->next_lsn || tdm_batch_lsn_last(&h) < risk->next_lsn)) {
        rv = TDM_CORRUPT(diag, "batch %" PRIu64 "..%" PRIu64 " does not hold LSN %" PRIu64,
                         h.lsn_first, tdm_batch_lsn_last(&h), risk->next_lsn);
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t *raw = tdm_malloc(h.raw_size + 1u);
    struct tandem_record *records = tdm_malloc(h.record_count * sizeof(*records));
    if (raw == NULL || records == NULL) {
        tdm_diag_printf(diag, "out of memory");
        rv = -ENOMEM;
    }
    if (rv == 0) {
        rv = tdm_batch_body_decode(&h, bytes + TDM_BATCH_HEADER_SIZE, raw, h.raw_size, diag);
    }
    int n = rv == 0 ? risk_decode(risk, &h, raw, records, diag) : rv;
    for (int i = 0; i < n; i++) { /* Only once every record decoded: all or nothing. */
        tdm_risk_count(risk, &records[i]);
    }
    tdm_free(records);
    tdm_free(raw);
    return n < 0 ? n : 0;
}

void tdm_risk_order(const struct tdm_risk *risk, uint32_t *order)
{
    for (uint32_t i = 0; i < risk->customer_count; i++) { /* Insertion: at most 256. */
        uint32_t j = i;
        for (; j > 0 && risk->customers[order[j - 1]] > risk->customers[i]; j--) {
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
}
