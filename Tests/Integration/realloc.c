/* realloc patterns: growth by small steps and by doubling across the class
 * and large-span boundaries, shrinking, ping-pong, interleaved blocks that
 * stop in-place growth; contents always preserved; glibc's edge cases:
 * realloc(NULL, n) allocates, realloc(p, 0) frees and returns NULL, a failed
 * realloc leaves the block alone. */
#include "sgcheck.h"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>

static void fill(unsigned char *p, size_t from, size_t to, unsigned seed) {
    for (size_t i = from; i < to; i++) p[i] = (unsigned char)(i * 31 + seed);
}
static void verify(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != (unsigned char)(i * 31 + seed)) {
            fprintf(stderr, "byte %zu of %zu changed\n", i, n);
            exit(1);
        }
    }
}

int main(void) {
    require_slabguard();
    /* Grow one byte at a time, then in steps, up to 2 MiB. */
    unsigned char *p = NULL;
    size_t n = 0;
    for (size_t next = 1; next <= (2u << 20); next = next < 5000 ? next + 1 : next + next / 7) {
        p = realloc(p, next);
        CHECK(p != NULL);
        CHECK(malloc_usable_size(p) >= next);
        verify(p, n, 7);
        fill(p, n, next, 7);
        n = next;
    }
    /* Shrink back down. */
    while (n > 1) {
        n = n / 3;
        p = realloc(p, n);
        CHECK(p != NULL);
        verify(p, n, 7);
    }
    free(p);

    /* Several blocks grown in turn, so none can simply extend into free space. */
    unsigned char *blocks[6] = {0};
    size_t lens[6] = {0};
    for (int step = 0; step < 60; step++) {
        for (int b = 0; b < 6; b++) {
            size_t next = lens[b] + 1000 + (size_t)step * 300 * (b + 1);
            blocks[b] = realloc(blocks[b], next);
            CHECK(blocks[b] != NULL);
            verify(blocks[b], lens[b], (unsigned)b);
            fill(blocks[b], lens[b], next, (unsigned)b);
            lens[b] = next;
        }
    }
    for (int b = 0; b < 6; b++) free(blocks[b]);

    /* Ping-pong between a small and a large size. */
    unsigned char *q = malloc(64);
    CHECK(q);
    fill(q, 0, 64, 3);
    for (int i = 0; i < 200; i++) {
        q = realloc(q, i % 2 ? 64 : 200000);
        CHECK(q);
        verify(q, 64, 3);
    }
    free(q);

    /* realloc(NULL, n) is malloc(n). */
    unsigned char *r = realloc(NULL, 100);
    CHECK(r != NULL && malloc_usable_size(r) >= 100);
    fill(r, 0, 100, 9);
    /* A failed realloc returns NULL with ENOMEM and leaves the block alone. */
    errno = 0;
    CHECK(realloc(r, opaque(SIZE_MAX - 64)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(r, opaque(SIZE_MAX / 2)) == NULL && errno == ENOMEM);
    verify(r, 100, 9);
    /* realloc(p, 0) frees p and returns NULL, as glibc does. */
    CHECK(realloc(r, 0) == NULL);
    /* realloc(NULL, 0) is malloc(0): a unique pointer. */
    void *z = realloc(NULL, 0);
    CHECK(z != NULL);
    free(z);
    printf("ok realloc\n");
    return 0;
}
