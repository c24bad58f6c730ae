/*
 * mprotect_toggle.c — what one mprotect of a guarded span's data page costs, with
 * and without the data pages being a kernel mapping of their own (GuardedAllocator:
 * tag and guard pages marked MADV_DONTDUMP so that no neighbour merges with the data).
 *
 * 256 spans laid out as slabguard lays out a small guarded span — [tag page, read-write]
 * [data page][guard page, inaccessible] — inside one large read-write mapping; each
 * round makes every data page accessible, touches it, and makes it inaccessible again.
 *
 *     gcc -O2 -pthread bench/c/mprotect_toggle.c -o /tmp/mprotect_toggle
 *     /tmp/mprotect_toggle OWN THREADS     OWN: 1 = own mappings, 0 = merged;
 *                                          THREADS: 2 = a second thread runs meanwhile
 *                                          (so each removal of access shoots down its TLB)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile int stop;

static void *spin(void *arg) {
    volatile char *p = arg;
    while (!stop) p[0]++;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s OWN(0|1) THREADS(1|2)\n", argv[0]); return 2; }
    int own = atoi(argv[1]), threads = atoi(argv[2]);
    const size_t page = 4096, pages = 1 << 14, spans = 256, stride = 8 * page;
    char *base = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    memset(base, 1, pages * page);
    pthread_t other;
    char *counter = malloc(64);
    if (threads > 1) pthread_create(&other, NULL, spin, counter);
    for (size_t i = 0; i < spans; i++) {
        char *span = base + i * stride;
        mprotect(span + 2 * page, page, PROT_NONE);   /* guard */
        mprotect(span + page, page, PROT_NONE);       /* data, free */
        if (own) {
            madvise(span, page, MADV_DONTDUMP);
            madvise(span + 2 * page, page, MADV_DONTDUMP);
        }
    }
    long calls = 0;
    double start = now();
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < spans; i++) {
            char *data = base + i * stride + page;
            mprotect(data, page, PROT_READ | PROT_WRITE);
            data[8] = 1;
            mprotect(data, page, PROT_NONE);
            calls += 2;
        }
    }
    double elapsed = now() - start;
    stop = 1;
    if (threads > 1) pthread_join(other, NULL);
    printf("own=%d threads=%d: %.0f ns per mprotect\n", own, threads, elapsed / calls * 1e9);
    return 0;
}
