/*
 * log.h — log lines: "time level node message", to stderr or a file.
 *
 * Every module logs through rc_log so that the server's --loglevel and --logfile apply to
 * all of them, and so that tests can capture lines (rc_log_set_sink) to assert that, for
 * example, a truncated tail was reported.
 */
#ifndef RC_COMMON_LOG_H
#define RC_COMMON_LOG_H

#include <stdint.h>
#include <stdio.h>

enum rc_log_level { RC_LOG_DEBUG = 0, RC_LOG_INFO = 1, RC_LOG_WARNING = 2, RC_LOG_ERROR = 3 };

/* Lines below level are dropped. Default: RC_LOG_INFO. */
void rc_log_set_level(enum rc_log_level level);
enum rc_log_level rc_log_get_level(void);
/* Parses "debug", "info", "warning" (or "warn"), "error"; returns -1 if unknown. */
int rc_log_parse_level(const char *name);
/* Lines go to file (not closed by the logger); NULL means stderr. */
void rc_log_set_file(FILE *file);
/* The node id printed in each line; 0 prints "-". */
void rc_log_set_node(uint64_t node_id);
/*
 * A sink receives every formatted line (without trailing newline) instead of the file;
 * NULL restores the file. Used by tests to capture what was logged.
 */
typedef void (*rc_log_sink_fn)(enum rc_log_level level, const char *line, void *ctx);
void rc_log_set_sink(rc_log_sink_fn sink, void *ctx);

void rc_log(enum rc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rc_debug(...) rc_log(RC_LOG_DEBUG, __VA_ARGS__)
#define rc_info(...)  rc_log(RC_LOG_INFO, __VA_ARGS__)
#define rc_warn(...)  rc_log(RC_LOG_WARNING, __VA_ARGS__)
#define rc_error(...) rc_log(RC_LOG_ERROR, __VA_ARGS__)

#endif
