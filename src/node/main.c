/* main.c — idunnod: parse the command line, start the node, run its loop. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"
#include "infer/child.h"
#include "node/node.h"

int main(int argc, char **argv)
{
    /* SDFS moves data in 1 MiB buffers: serve them from the heap and keep the
     * freed ones, rather than an mmap, page faults and munmap for each. */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    /* The node runs its models in processes of this same binary
     * (src/infer/child.h). */
    if (argc > 1 && strcmp(argv[1], "--infer-child") == 0) {
        setenv("OPENBLAS_NUM_THREADS", "1", 0);
        return infer_child_main(argc, argv);
    }
    struct node_config cfg;
    char errmsg[300];
    int rc = node_parse_args(argc, argv, &cfg, errmsg, sizeof errmsg);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "idunnod: %s\n", errmsg);
        return 1;
    }
    /* Inference and decoding threads share the two cores with the loop; a
     * library spawning its own pool per call would oversubscribe them. */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    /* Peers die at any time; a write to their socket must fail with EPIPE, not
     * kill this process (libuv and libraft write with plain write(2)). */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    static struct node node;
    rc = node_start(&node, loop, &cfg);
    if (rc < 0) {
        fprintf(stderr, "idunnod: %s\n", node.errmsg);
        LOG_ERROR("node", "start failed: %s", node.errmsg);
        return 2;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    node_config_free(&node.cfg);
    log_close();
    return node.exit_code;
}
