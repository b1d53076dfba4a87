/* engine/base/error.c: tandem_strerror() and the diag helpers.
 *
 * 1. Functions that can fail return 0 or a negative code; system errors pass
 *    through as -errno, tandem's own live in [-20999, -20000] (tandem.h).
 * 2. Human detail travels in a struct tdm_diag, wrapped as the error rises.
 * Failure modes: none (formatting truncates to the diag's size). */
#include "error.h"

#include <stdio.h>
#include <string.h>

#include "trace.h"

const char *tandem_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case TANDEM_EINVALID:
        return "invalid argument or record";
    case TANDEM_ENOTPRIMARY:
        return "not the primary";
    case TANDEM_ESTALEEPOCH:
        return "stale epoch";
    case TANDEM_ECOPIES:
        return "too few copies before the deadline";
    case TANDEM_ECORRUPT:
        return "checksum mismatch (corrupt data)";
    case TANDEM_EFAILED:
        return "node failed: writes stopped after fatal I/O";
    case TANDEM_ECANCELED:
        return "canceled";
    case TANDEM_ELOCKED:
        return "directory is locked by another process";
    case TANDEM_ENOTFOUND:
        return "not found";
    case TANDEM_EREADONLY:
        return "opened read-only";
    case TANDEM_EDAMAGED:
        return "log damaged: repair from a replica";
    case TANDEM_EFORMAT:
        return "not a tandem directory or unsupported format";
    case TANDEM_EBUSY:
        return "busy";
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        return strerror(-code);
    }
    return "unknown error";
}

void tdm_diag_printf(struct tdm_diag *diag, const char *format, ...)
{
    if (diag == NULL) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(diag->message, sizeof(diag->message), format, args);
    va_end(args);
}

void tdm_diag_wrapf(struct tdm_diag *diag, const char *format, ...)
{
    if (diag == NULL) {
        return;
    }
    char prefix[TDM_DIAG_SIZE];
    char old[TDM_DIAG_SIZE];
    va_list args;
    va_start(args, format);
    vsnprintf(prefix, sizeof(prefix), format, args);
    va_end(args);
    memcpy(old, diag->message, sizeof(old));
    old[sizeof(old) - 1] = '\0';
    /* Join into a buffer that always fits, then keep what the diag holds. */
    char joined[2 * TDM_DIAG_SIZE + 2];
    size_t prefix_size = strlen(prefix);
    memcpy(joined, prefix, prefix_size);
    joined[prefix_size] = ':';
    joined[prefix_size + 1] = ' ';
    memcpy(joined + prefix_size + 2, old, strlen(old) + 1);
    memcpy(diag->message, joined, sizeof(diag->message) - 1);
    diag->message[sizeof(diag->message) - 1] = '\0';
}

int tdm_corrupt_at(struct tdm_diag *diag, const char *file, int line, const char *format, ...)
{
    char message[TDM_DIAG_SIZE];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    tdm_tracef("corrupt at %s:%d: %s", file, line, message);
    tdm_diag_printf(diag, "%s", message);
    return TANDEM_ECORRUPT;
}
