/* dashboard.h — the dashboard page served at GET / (dashboard.c): one
 * self-contained HTML document, inline CSS and JavaScript, no external assets.
 * It polls /api/status every second. */
#ifndef IDUNNO_HTTP_DASHBOARD_H
#define IDUNNO_HTTP_DASHBOARD_H

#include <stddef.h>

extern const char http_dashboard_html[];
extern const size_t http_dashboard_len;

/* The Content-Security-Policy it is served with: nothing from elsewhere. */
#define HTTP_DASHBOARD_CSP                                                        \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " \
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "    \
    "frame-ancestors 'none'"

#endif
