/* net/risk.h: the count, per customer, of the records a failover may lose
 * (DESIGN "Switchover, failover": a dry run says "how many records of which
 * customers"; docs/PROTOCOL.md §7.5).
 *
 * The LSNs at risk are counted in order from lsn_first: records read from
 * the node's own copy (tdm_risk_count), then whole batches fetched from
 * another node's copy (tdm_risk_count_batch), which are untrusted: each is
 * verified (header, size, checksum, entries, records) before any of its
 * records counts, and must hold the next LSN to count. At most
 * TDM_RISK_LSNS_MAX LSNs are counted and TDM_RISK_CUSTOMERS_MAX customers
 * named; the records of customers beyond them are counted together.
 *
 * No I/O, no allocation but one batch body at a time. Thread: one at a time. */
#ifndef TDM_NET_RISK_H
#define TDM_NET_RISK_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/error.h"
#include "tandem.h"

#define TDM_RISK_LSNS_MAX      100000u
#define TDM_RISK_CUSTOMERS_MAX 256u

struct tdm_risk {
    uint64_t lsn_first; /* The LSNs at risk. */
    uint64_t lsn_last;
    uint64_t count_last; /* Counted at most through here (TDM_RISK_LSNS_MAX). */
    uint64_t next_lsn;   /* The first LSN not counted yet. */
    uint64_t records;    /* Records counted. */
    uint32_t customer_count;
    uint32_t customers[TDM_RISK_CUSTOMERS_MAX];
    uint64_t customer_records[TDM_RISK_CUSTOMERS_MAX];
    uint64_t other_records; /* Of customers beyond the table. */
};

/* Start counting lsn_first..lsn_last (1 <= lsn_first <= lsn_last). */
void tdm_risk_init(struct tdm_risk *risk, uint64_t lsn_first, uint64_t lsn_last);

/* Count the record at risk->next_lsn and move on to the next LSN. */
void tdm_risk_count(struct tdm_risk *risk, const struct tandem_record *record);

/* Count the records of a batch from another node's copy (size bytes, header
 * and body) at and after risk->next_lsn, through risk->count_last. Returns 0,
 * or TANDEM_ECORRUPT / -ENOMEM with diag, having counted nothing of it. */
int tdm_risk_count_batch(struct tdm_risk *risk, const uint8_t *bytes, size_t size,
                         struct tdm_diag *diag);

/* order[0 .. customer_count): the table's indexes by customer id. */
void tdm_risk_order(const struct tdm_risk *risk, uint32_t *order);

#endif
