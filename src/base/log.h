/* log.h — the node's log: one line per event, appended to DATA/idunnod.log.
 *
 * Line format (what `idunno grep` searches):
 *   2026-11-24T12:00:00.123Z node3 INFO swim: member node7#1764000000123 failed
 * Lines are written with one write(2) on an O_APPEND descriptor, so threads never
 * interleave inside a line. Before log_open() lines go to stderr.
 */
#ifndef IDUNNO_BASE_LOG_H
#define IDUNNO_BASE_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Opens (creating) `path` for appending and tags every later line with `node`.
 * Returns 0 or a negative ID_E* code. `also_stderr` copies lines to stderr. */
int log_open(const char *path, const char *node, int also_stderr);

/* Lines below `level` are dropped. Default: LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_level_parse(const char *s);

void log_close(void);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap);

#define LOG_DEBUG(mod, ...)                               \
    do {                                                  \
        if (log_get_level() <= LOG_LEVEL_DEBUG)           \
            log_write(LOG_LEVEL_DEBUG, mod, __VA_ARGS__); \
    } while (0)
#define LOG_INFO(mod, ...) log_write(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...) log_write(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) log_write(LOG_LEVEL_ERROR, mod, __VA_ARGS__)

#endif
