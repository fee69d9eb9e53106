/* oip_load.c — a closed-loop HTTP load generator for bench/oip_bench.py, in
 * C so that the clients cost little of the cores they share with the cluster
 * (eight Python clients took a quarter of this machine at 1,500 requests/s).
 *
 *   oip_load [--clients N] [--seconds S] [--warm S] ADDR[,ADDR...] REQUEST...
 *
 * Each REQUEST is a file holding one whole HTTP/1.1 request (request line,
 * headers, body) as the caller wrote it. N connections (on the ADDRs in
 * turn, each with keep-alive) send the requests in turn, one at a time each:
 * a closed loop. An answer counts when its status is 200 and its body holds
 * "outputs"; any other answer, a closed connection or a malformed response is
 * a failure (the connection is opened anew). Answers in the first --warm
 * seconds are not measured. Prints one JSON object: requests measured,
 * requests/s, failures, the first failure's text, latency p50/p90/p99/mean
 * in ms.
 *
 * One thread, epoll; responses must carry Content-Length (every IDunno
 * answer does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_ADDRS 64
#define RESP_MAX (1u << 20)

struct request {
    char *bytes;
    size_t len;
};

struct client {
    int fd;
    struct sockaddr_in addr;
    size_t next_req; /* index into the requests */
    size_t sent;     /* bytes of the current request written */
    char *resp;
    size_t resp_len;
    double started;
};

static struct request *requests;
static size_t n_requests;
static double *latencies;
static size_t n_lat, cap_lat;
static unsigned long failures;
static char first_error[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "oip_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: oip_load [--clients N] [--seconds S] [--warm S] ADDR[,ADDR...] "
               "REQUEST_FILE...\n"
               "A closed-loop HTTP load generator: N keep-alive connections each send the\n"
               "requests (whole HTTP/1.1 requests, one per file) in turn; prints JSON.\n");
}

static void read_request(const char *path, struct request *r)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    struct stat st;
    if (fstat(fileno(f), &st) < 0)
        die(path);
    r->len = (size_t)st.st_size;
    r->bytes = malloc(r->len ? r->len : 1);
    if (!r->bytes || fread(r->bytes, 1, r->len, f) != r->len)
        die(path);
    fclose(f);
}

static void note_failure(const char *what, size_t len)
{
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%.*s", (int)(len < 200 ? len : 200), what);
    failures++;
}

static void client_connect(int ep, struct client *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&c->addr, sizeof c->addr) < 0 && errno != EINPROGRESS)
        die("connect");
    c->sent = 0;
    c->resp_len = 0;
    c->started = now_s();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void client_reset(int ep, struct client *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    client_connect(ep, c);
}

/* Writes what is left of the current request. 0, or -1 on a failed write. */
static int client_write(int ep, struct client *c)
{
    const struct request *r = &requests[c->next_req];
    while (c->sent < r->len) {
        ssize_t n = write(c->fd, r->bytes + c->sent, r->len - c->sent);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0)
            return -1;
        c->sent += (size_t)n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->sent < r->len ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* The length of a whole response at the head of c->resp (headers and
 * Content-Length bytes of body), 0 while incomplete, -1 if malformed. */
static long response_length(const struct client *c, int *status, size_t *body_at)
{
    const char *end = memmem(c->resp, c->resp_len, "\r\n\r\n", 4);
    if (!end)
        return c->resp_len > 65536 ? -1 : 0;
    size_t head = (size_t)(end - c->resp) + 4;
    if (c->resp_len < 12 || memcmp(c->resp, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->resp + 9);
    long clen = -1;
    for (const char *p = c->resp; p <= end;) {
        const char *nl = memchr(p, '\n', (size_t)(end + 2 - p)); /* the last header's too */
        if (!nl)
            break;
        if ((size_t)(nl - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            clen = atol(p + 15);
        p = nl + 1;
    }
    if (clen < 0 || (size_t)clen > RESP_MAX - head)
        return -1;
    *body_at = head;
    return (long)(head + (size_t)clen);
}

static void record(double latency_ms)
{
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 4096;
        latencies = realloc(latencies, cap_lat * sizeof *latencies);
        if (!latencies)
            die("realloc");
    }
    latencies[n_lat++] = latency_ms;
}

/* Reads; on a whole response checks it, records it and sends the next
 * request. 0, or -1 when the connection must be opened anew. */
static int client_read(int ep, struct client *c, double measure_from)
{
    for (;;) {
        ssize_t n = read(c->fd, c->resp + c->resp_len, RESP_MAX - c->resp_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n <= 0) {
            note_failure("the server closed the connection", 32);
            return -1;
        }
        c->resp_len += (size_t)n;
        int status = 0;
        size_t body_at = 0;
        long whole = response_length(c, &status, &body_at);
        if (whole < 0) {
            note_failure(c->resp, c->resp_len);
            return -1;
        }
        if (whole == 0 || c->resp_len < (size_t)whole)
            continue;
        const char *body = c->resp + body_at;
        size_t body_len = (size_t)whole - body_at;
        double t = now_s();
        if (status != 200 || !memmem(body, body_len, "\"outputs\"", 9))
            note_failure(body, body_len);
        else if (c->started >= measure_from)
            record((t - c->started) * 1000.0);
        /* A keep-alive connection answers one request at a time: nothing
         * may follow the response. */
        if (c->resp_len != (size_t)whole) {
            note_failure("bytes after the response", 24);
            return -1;
        }
        c->resp_len = 0;
        c->sent = 0;
        c->next_req = (c->next_req + 1) % n_requests;
        c->started = t;
        return client_write(ep, c);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!n_lat)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n_lat);
    return latencies[i < n_lat ? i : n_lat - 1];
}

static int parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int clients = 8;
    double seconds = 10, warm = 3;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--clients") == 0)
            clients = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--warm") == 0)
            warm = atof(argv[i + 1]);
        else {
            usage(stderr);
            return 2;
        }
    }
    if (argc - i < 2 || clients < 1 || clients > MAX_CLIENTS || seconds <= 0 || warm < 0) {
        usage(stderr);
        return 2;
    }
    struct sockaddr_in addrs[MAX_ADDRS];
    size_t n_addrs = 0;
    char *list = strdup(argv[i++]);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n_addrs == MAX_ADDRS || parse_addr(tok, &addrs[n_addrs]) < 0) {
            fprintf(stderr, "oip_load: bad address %s (want IPv4:PORT)\n", tok);
            return 2;
        }
        n_addrs++;
    }
    free(list);
    n_requests = (size_t)(argc - i);
    requests = calloc(n_requests, sizeof *requests);
    if (!requests)
        die("calloc");
    for (size_t k = 0; k < n_requests; k++)
        read_request(argv[i + (int)k], &requests[k]);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct client *cs = calloc((size_t)clients, sizeof *cs);
    if (!cs)
        die("calloc");
    double start = now_s(), measure_from = start + warm, until = measure_from + seconds;
    for (int k = 0; k < clients; k++) {
        cs[k].addr = addrs[(size_t)k % n_addrs];
        cs[k].next_req = (size_t)k % n_requests;
        cs[k].resp = malloc(RESP_MAX);
        if (!cs[k].resp)
            die("malloc");
        client_connect(ep, &cs[k]);
    }
    struct epoll_event evs[64];
    double t;
    while ((t = now_s()) < until) {
        int timeout = (int)((until - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 64, timeout < 100 ? timeout : 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            struct client *c = evs[k].data.ptr;
            int rc = 0;
            if (evs[k].events & (EPOLLERR | EPOLLHUP) && !(evs[k].events & EPOLLIN)) {
                note_failure("the connection failed", 21);
                rc = -1;
            }
            if (!rc && evs[k].events & EPOLLOUT)
                rc = client_write(ep, c);
            if (!rc && evs[k].events & EPOLLIN)
                rc = client_read(ep, c, measure_from);
            if (rc < 0)
                client_reset(ep, c);
        }
    }
    qsort(latencies, n_lat, sizeof *latencies, cmp_double);
    double sum = 0;
    for (size_t k = 0; k < n_lat; k++)
        sum += latencies[k];
    printf("{\"requests\": %zu, \"requests_per_s\": %.1f, \"failures\": %lu, "
           "\"first_error\": ",
           n_lat, (double)n_lat / seconds, failures);
    if (first_error[0]) {
        putchar('"');
        for (const char *p = first_error; *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p < 0x20)
                putchar(' ');
            else
                putchar(*p);
        putchar('"');
    } else {
        fputs("null", stdout);
    }
    printf(", \"latency_ms\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"mean\": %.2f}}\n",
           pct(50), pct(90), pct(99), n_lat ? sum / (double)n_lat : 0.0);
    return 0;
}
