/* sdfs_group.c — put-dir's grouping of small files into batch requests
 * (cli_sdfs__batch_take, cmd_sdfs.h). A file of its own: pure, and unit
 * tested without the rest of the client.
 *
 * Threading: any.
 */
#include "cli/cmd_sdfs.h"
#include "sdfs/catalog.h"

size_t cli_sdfs__batch_take(const uint64_t *sizes, const size_t *queue, size_t n)
{
    size_t k = 0;
    uint64_t bytes = 0;
    while (k < n && k < CLI_SDFS_BATCH_FILES) {
        uint64_t b = sizes[queue[k]];
        if (k > 0 && bytes + b > SDFS_BATCH_BYTES_MAX)
            break;
        bytes += b;
        k++;
    }
    return k;
}
