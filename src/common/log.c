/* log.c — formatted log lines with level filter, file and capture sink (see log.h). */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum rc_log_level current_level = RC_LOG_INFO;
static FILE *log_file;
static uint64_t log_node_id;
static rc_log_sink_fn log_sink;
static void *log_sink_ctx;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warning", "error"};

void rc_log_set_level(enum rc_log_level level)
{
    current_level = level;
}

enum rc_log_level rc_log_get_level(void)
{
    return current_level;
}

int rc_log_parse_level(const char *name)
{
    if (strcmp(name, "warn") == 0)
        return RC_LOG_WARNING;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void rc_log_set_file(FILE *file)
{
    log_file = file;
}

void rc_log_set_node(uint64_t node_id)
{
    log_node_id = node_id;
}

void rc_log_set_sink(rc_log_sink_fn sink, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    log_sink = sink;
    log_sink_ctx = ctx;
    pthread_mutex_unlock(&log_lock);
}

void rc_log(enum rc_log_level level, const char *fmt, ...)
{
    if (level < current_level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    char node[24] = "-";
    if (log_node_id)
        snprintf(node, sizeof node, "%llu", (unsigned long long)log_node_id);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s %s ", (long)(tv.tv_usec / 1000),
                  level_names[level], node);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    if (log_sink) {
        log_sink(level, line, log_sink_ctx);
    } else {
        FILE *out = log_file ? log_file : stderr;
        fprintf(out, "%s\n", line);
        fflush(out);
    }
    pthread_mutex_unlock(&log_lock);
}
