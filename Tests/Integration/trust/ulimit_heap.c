/* ulimit_heap.c — allocation under an address-space limit (run under
 * `ulimit -v`): allocates 1 MiB blocks, each with a few small buffers beside
 * it, until malloc says no, then checks that "no" is NULL with ENOMEM, that
 * everything allocated is usable, and that small and large allocations still
 * work after freeing.  Prints "ok ulimit_heap MIB" (MiB reached) and exits 0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOCKS 65536

static void *blocks[MAX_BLOCKS];
static void *smalls[MAX_BLOCKS];

int main(void) {
    size_t n = 0;
    while (n < MAX_BLOCKS) {
        errno = 0;
        void *p = malloc(1 << 20);
        if (p == NULL) {
            if (errno != ENOMEM) { fprintf(stderr, "malloc failed with errno %d, not ENOMEM\n", errno); return 1; }
            break;
        }
        memset(p, 0x5a, 4096);            /* touch a little: the limit is on address space */
        blocks[n] = p;
        smalls[n] = malloc(16 + n % 1000);
        n++;
    }
    if (n == MAX_BLOCKS) { fprintf(stderr, "no limit reached\n"); return 1; }
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char *)blocks[i])[4095] != 0x5a) { fprintf(stderr, "block %zu damaged\n", i); return 1; }
        free(blocks[i]);
        free(smalls[i]);
    }
    void *again = malloc(100);
    if (again == NULL) { fprintf(stderr, "malloc fails after freeing\n"); return 1; }
    free(again);
    /* The freed blocks' pages are the heap's again: a large buffer fits in them (the
     * arena had no record left for a span freed at the limit, and lost them all). */
    void *big = malloc(600000);
    if (big == NULL) { fprintf(stderr, "a large malloc fails after freeing\n"); return 1; }
    memset(big, 1, 600000);
    free(big);
    printf("ok ulimit_heap %zu\n", n);
    return 0;
}
