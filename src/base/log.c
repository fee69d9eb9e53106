/* log.c — the append-only node log of log.h. */
#include "base/log.h"

#include "base/err.h"
#include "base/names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static int log_stderr = 1;
static char log_node[64] = "-";
static enum log_level log_min = LOG_LEVEL_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_open(const char *path, const char *node, int also_stderr)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return id_from_errno(errno);
    if (log_fd >= 0)
        close(log_fd);
    log_fd = fd;
    log_stderr = also_stderr;
    snprintf(log_node, sizeof log_node, "%s", node ? node : "-");
    return 0;
}

void log_set_level(enum log_level level)
{
    log_min = level;
}
enum log_level log_get_level(void)
{
    return log_min;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0 || (i == 2 && strcasecmp(s, "warning") == 0))
            return i;
    return -1;
}

void log_close(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    log_stderr = 1;
}

void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level < log_min)
        return;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), log_node, level_names[level], module);
    if (n < 0)
        return;
    /* Messages quote names and text from the network: escaped, a message can
     * neither break the one-event-per-line rule nor send a terminal control
     * sequence to whoever reads the log. */
    char raw[sizeof line];
    vsnprintf(raw, sizeof raw, fmt, ap);
    if ((size_t)n < sizeof line - 1)
        n += (int)strlen(id_escape(raw, line + n, sizeof line - 1 - (size_t)n));
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2; /* truncated: keep the line a line */
    line[n++] = '\n';
    if (log_fd >= 0 && write(log_fd, line, (size_t)n) < 0) {
        /* Nowhere better to report a failing log; the line still reaches stderr below. */
    }
    if (log_fd < 0 || log_stderr) {
        if (write(STDERR_FILENO, line, (size_t)n) < 0) {
            /* stderr closed: nothing to do */
        }
    }
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, module, fmt, ap);
    va_end(ap);
}
