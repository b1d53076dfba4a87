/* engine/base/error.h: error codes and human detail (STYLE B4). */
#ifndef TDM_ENGINE_BASE_ERROR_H
#define TDM_ENGINE_BASE_ERROR_H

#include <stdarg.h>

#include "../../include/tandem.h"

#define TDM_DIAG_SIZE TANDEM_DIAG_SIZE

/* One line of human detail beside an error code. */
struct tdm_diag {
    char message[TDM_DIAG_SIZE];
};

/* Write a formatted message into diag (which may be NULL). */
void tdm_diag_printf(struct tdm_diag *diag, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix diag's message with a formatted context: "open segment 42: <old>". */
void tdm_diag_wrapf(struct tdm_diag *diag, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Record where corruption was found and return TANDEM_ECORRUPT (SQLite's
 * SQLITE_CORRUPT_BKPT): one place to set a breakpoint. */
int tdm_corrupt_at(struct tdm_diag *diag, const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
#define TDM_CORRUPT(diag, ...) tdm_corrupt_at((diag), __FILE__, __LINE__, __VA_ARGS__)

#endif
