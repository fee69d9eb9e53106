/* clock.h — time sources. Cores never call these: they take `now` as an argument
 * so their tests can run on a fake clock. Only glue code reads the real clocks. */
#ifndef IDUNNO_BASE_CLOCK_H
#define IDUNNO_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC: for timeouts and intervals. */
static inline uint64_t id_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Microseconds on CLOCK_MONOTONIC: for latency measurements. */
static inline uint64_t id_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Milliseconds since the Unix epoch: for logs, incarnations and reports. */
static inline uint64_t id_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Microseconds of CPU the calling thread has used: what a piece of work cost
 * it, whatever else shares the cores meanwhile. */
static inline uint64_t id_thread_cpu_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
