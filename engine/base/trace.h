/* engine/base/trace.h: diagnostic lines ("trace"; "log" means the data log). */
#ifndef TDM_ENGINE_BASE_TRACE_H
#define TDM_ENGINE_BASE_TRACE_H

/* Write one trace line to stderr when TANDEM_TRACE is set in the environment,
 * or always when tdm_trace_enable(1) was called. Never include record payloads
 * (PII) in a trace line. Thread-safe. */
void tdm_tracef(const char *format, ...) __attribute__((format(printf, 1, 2)));
void tdm_trace_enable(int on);

#endif
