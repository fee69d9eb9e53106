/* route.c — request path to endpoint (route.h). */
#include "http/route.h"

#include <string.h>

static const struct {
    const char *path;
    const char *name;
} http_routes[HTTP_ROUTE_COUNT] = {
    [HTTP_ROUTE_NONE] = {NULL, "none"},
    [HTTP_ROUTE_DASHBOARD] = {"/", "dashboard"},
    [HTTP_ROUTE_METRICS] = {"/metrics", "metrics"},
    [HTTP_ROUTE_HEALTHZ] = {"/healthz", "healthz"},
    [HTTP_ROUTE_READYZ] = {"/readyz", "readyz"},
    [HTTP_ROUTE_STATUS] = {"/api/status", "status"},
    [HTTP_ROUTE_V2] = {NULL, "v2"},
};

enum http_route http_route_match(const char *path)
{
    if (!path)
        return HTTP_ROUTE_NONE;
    size_t n = strcspn(path, "?");
    for (int r = HTTP_ROUTE_NONE + 1; r < HTTP_ROUTE_COUNT; r++)
        if (http_routes[r].path && strlen(http_routes[r].path) == n &&
            memcmp(http_routes[r].path, path, n) == 0)
            return (enum http_route)r;
    return HTTP_ROUTE_NONE;
}

int http_method_ok(const char *method)
{
    return method && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
}

const char *http_route_name(enum http_route r)
{
    return r > HTTP_ROUTE_NONE && r < HTTP_ROUTE_COUNT ? http_routes[r].name : "none";
}
