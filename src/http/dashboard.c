/* dashboard.c — the page served at GET / (dashboard.h): members with their
 * state, the coordinator, the jobs table and the fairness chart (each job's
 * query rate over the last five minutes, kept by the page itself). It polls
 * /api/status every second; the JSON it reads is described in docs/http.md.
 * Data is put into the page with textContent only, never parsed as HTML.
 *
 * The page itself is src/http/dashboard.html; the build turns it into a C
 * string (scripts/embed-text.sh, into BUILD/gen/dashboard_html.inc). */
#include "http/dashboard.h"

const char http_dashboard_html[] =
#include "dashboard_html.inc"
    ;

const size_t http_dashboard_len = sizeof http_dashboard_html - 1;
