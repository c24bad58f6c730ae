/*
 * shapes.c — allocator benchmarks with the shapes of the standard ones in
 * mimalloc-bench (written here from their published descriptions, not copied):
 * each mode stresses one thing an allocator can be bad at.
 *
 * Usage: shapes MODE [THREADS] [SCALE]
 *
 *   xmalloc        cross-thread producer/consumer (xmalloc-test): half the threads
 *                  allocate 16–256 B buffers and hand them over a bounded queue to
 *                  the other half, which free them: every free is remote.
 *   cache-scratch  passive false sharing (cache-scratch): the main thread allocates
 *                  one 8-byte object per worker, adjacent; each worker frees its
 *                  object, then repeatedly allocates an 8-byte object, writes it
 *                  many times and frees it.  An allocator that hands a thread
 *                  memory on another thread's cache line makes them fight over it.
 *   cache-thrash   active false sharing (cache-thrash): each worker allocates its
 *                  own 8-byte objects, writes each many times, frees it.
 *   mstress        memory stress (mstress): rounds in which each thread keeps a set
 *                  of live buffers of mixed sizes (8 B–16 KiB, a few up to 1 MiB),
 *                  frees a random part, refills, and passes a part of its set to
 *                  the next thread, which frees it.
 *   malloc-large   large buffers (malloc-large): 5–25 MiB each, up to 20 live, each
 *                  touched once per page, replaced at random.
 *   simple         glibc's bench-malloc-simple: allocate N blocks of one size, free
 *                  them, for the sizes 16, 32, ... 4096 B; single thread.
 *   thread         glibc's bench-malloc-thread: each thread frees and allocates a
 *                  random slot of 1024 with a random size from a skewed 8 B–32 KiB
 *                  distribution.
 *
 *   THREADS        worker threads (default 2; simple ignores it)
 *   SCALE          work multiplier (default 1): every mode takes ~0.1–0.5 s on glibc
 *                  at 1 on a current x86-64 core.
 *
 * Output: "time SECONDS" (wall, CLOCK_MONOTONIC, threads created to joined) and a
 * "checksum 0x..." that depends only on the fixed seeds (the same under every
 * allocator; it also keeps the work from being optimized away).
 */

#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { uint64_t s; } rng_t;
static inline uint64_t rng_next(rng_t *r) {
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) { fprintf(stderr, "shapes: out of memory (%zu bytes)\n", n); exit(2); }
    return p;
}

static int threads = 2;
static long scale = 1;
static _Atomic uint64_t checksum;

/* ---- xmalloc: producer/consumer ------------------------------------------ */

enum { QUEUE = 4096 };
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    void *items[QUEUE];
    int head, count, producers_left;
} queue_t;
static queue_t queue = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0 };

static void *producer(void *arg) {
    rng_t r = { 0x9E3779B97F4A7C15ULL * (uintptr_t)arg + 1 };
    long n = 400000 * scale;
    void *batch[64];
    for (long i = 0; i < n; i += 64) {
        for (int b = 0; b < 64; b++) {
            size_t size = 16 + rng_below(&r, 241);
            unsigned char *p = xmalloc(size);
            p[0] = (unsigned char)size; p[size - 1] = 1;
            batch[b] = p;
        }
        pthread_mutex_lock(&queue.lock);
        for (int b = 0; b < 64; b++) {
            while (queue.count == QUEUE) pthread_cond_wait(&queue.changed, &queue.lock);
            queue.items[(queue.head + queue.count++) % QUEUE] = batch[b];
        }
        pthread_cond_broadcast(&queue.changed);
        pthread_mutex_unlock(&queue.lock);
    }
    pthread_mutex_lock(&queue.lock);
    queue.producers_left--;
    pthread_cond_broadcast(&queue.changed);
    pthread_mutex_unlock(&queue.lock);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    uint64_t sum = 0;
    for (;;) {
        void *batch[64];
        int got = 0;
        pthread_mutex_lock(&queue.lock);
        while (queue.count == 0 && queue.producers_left > 0) pthread_cond_wait(&queue.changed, &queue.lock);
        if (queue.count == 0) { pthread_mutex_unlock(&queue.lock); break; }
        while (queue.count > 0 && got < 64) {
            batch[got++] = queue.items[queue.head];
            queue.head = (queue.head + 1) % QUEUE;
            queue.count--;
        }
        pthread_cond_broadcast(&queue.changed);
        pthread_mutex_unlock(&queue.lock);
        for (int b = 0; b < got; b++) { sum += ((unsigned char *)batch[b])[0]; free(batch[b]); }
    }
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

/* ---- cache-scratch / cache-thrash ----------------------------------------- */

static void *scratch_objects[1024];
static int passive;

static void *false_sharing(void *arg) {
    intptr_t id = (intptr_t)arg;
    if (passive) free(scratch_objects[id]);
    long rounds = 300000 * scale;
    uint64_t sum = 0;
    for (long i = 0; i < rounds; i++) {
        volatile char *p = xmalloc(8);
        for (int w = 0; w < 100; w++) { p[w & 7] = (char)(w + id); }
        sum += (unsigned char)p[3];
        free((void *)p);
    }
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

/* ---- mstress --------------------------------------------------------------- */

enum { MSTRESS_LIVE = 2000 };
typedef struct { void *items[MSTRESS_LIVE / 4]; } handoff_t;
static handoff_t handoffs[1024];
static pthread_barrier_t mstress_barrier;

static size_t mstress_size(rng_t *r) {
    uint64_t x = rng_below(r, 1000);
    if (x == 0) return 65536 + rng_below(r, 1 << 20);   /* rare big ones */
    if (x < 100) return 1024 + rng_below(r, 15 * 1024);
    return 8 + rng_below(r, 1016);
}

/* Each round: free and refill a random half of the thread's live set, hand a quarter
 * of it to the next thread (barrier), free what the previous thread handed over
 * (barrier).  The barriers make every run do the same frees in the same order. */
static void *mstress(void *arg) {
    intptr_t id = (intptr_t)arg;
    rng_t r = { 0xD1B54A32D192ED03ULL * (uint64_t)(id + 1) };
    void **live = xmalloc(sizeof(void *) * MSTRESS_LIVE);
    for (int i = 0; i < MSTRESS_LIVE; i++) { live[i] = xmalloc(mstress_size(&r)); memset(live[i], 1, 8); }
    uint64_t sum = 0;
    long rounds = 400 * scale;
    for (long round = 0; round < rounds; round++) {
        for (int k = 0; k < MSTRESS_LIVE / 2; k++) {
            int i = (int)rng_below(&r, MSTRESS_LIVE);
            sum += ((unsigned char *)live[i])[0];
            free(live[i]);
            size_t n = mstress_size(&r);
            live[i] = xmalloc(n);
            memset(live[i], (int)(n & 0xFF), 8);
        }
        handoff_t *mine = &handoffs[id];
        for (int k = 0; k < MSTRESS_LIVE / 4; k++) {
            int i = (int)rng_below(&r, MSTRESS_LIVE);
            mine->items[k] = live[i];
            live[i] = xmalloc(mstress_size(&r));
            memset(live[i], 2, 8);
        }
        pthread_barrier_wait(&mstress_barrier);
        handoff_t *theirs = &handoffs[(id + threads - 1) % threads];
        for (int k = 0; k < MSTRESS_LIVE / 4; k++) { sum += ((unsigned char *)theirs->items[k])[0]; free(theirs->items[k]); }
        pthread_barrier_wait(&mstress_barrier);
    }
    for (int i = 0; i < MSTRESS_LIVE; i++) free(live[i]);
    free(live);
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

/* ---- malloc-large ----------------------------------------------------------- */

static void *large(void *arg) {
    intptr_t id = (intptr_t)arg;
    rng_t r = { 0xA0761D6478BD642FULL * (uint64_t)(id + 1) };
    enum { LIVE = 20 };
    char *live[LIVE] = {0};
    uint64_t sum = 0;
    long n = 300 * scale;
    for (long i = 0; i < n; i++) {
        int slot = (int)rng_below(&r, LIVE);
        free(live[slot]);
        size_t size = (5u << 20) + rng_below(&r, 20u << 20);
        live[slot] = xmalloc(size);
        for (size_t off = 0; off < size; off += 4096) live[slot][off] = (char)(off >> 12);
        sum += (unsigned char)live[slot][size / 2 & ~(size_t)4095];
    }
    for (int s = 0; s < LIVE; s++) free(live[s]);
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

/* ---- glibc bench-malloc-simple / bench-malloc-thread ----------------------- */

static void simple(void) {
    enum { BLOCKS = 2000 };
    static void *blocks[BLOCKS];
    uint64_t sum = 0;
    for (long rep = 0; rep < 20 * scale; rep++) {
        for (size_t size = 16; size <= 4096; size *= 2) {
            for (int i = 0; i < BLOCKS; i++) { blocks[i] = xmalloc(size); ((char *)blocks[i])[0] = (char)i; }
            for (int i = 0; i < BLOCKS; i++) { sum += (unsigned char)((char *)blocks[i])[0]; free(blocks[i]); }
        }
    }
    atomic_fetch_add(&checksum, sum);
}

static void *thread_bench(void *arg) {
    intptr_t id = (intptr_t)arg;
    rng_t r = { 0xE7037ED1A0B428DBULL * (uint64_t)(id + 1) };
    enum { SLOTS = 1024 };
    void *slots[SLOTS] = {0};
    uint64_t sum = 0;
    long n = 3000000 * scale;
    for (long i = 0; i < n; i++) {
        int s = (int)rng_below(&r, SLOTS);
        if (slots[s]) { sum += ((unsigned char *)slots[s])[0]; free(slots[s]); }
        /* skewed sizes: mostly small, a tail to 32 KiB (as glibc's benchmark draws them) */
        uint64_t x = rng_next(&r);
        size_t size = 8u << (x % 13 == 0 ? 6 + x % 7 : x % 5);
        size += (x >> 20) % size;
        slots[s] = xmalloc(size);
        ((unsigned char *)slots[s])[0] = (unsigned char)size;
    }
    for (int s = 0; s < SLOTS; s++) free(slots[s]);
    atomic_fetch_add(&checksum, sum);
    return NULL;
}

/* ---- driver ------------------------------------------------------------------ */

static void run_threads(void *(*body)(void *), int count) {
    pthread_t t[1024];
    for (int i = 0; i < count; i++) pthread_create(&t[i], NULL, body, (void *)(intptr_t)i);
    for (int i = 0; i < count; i++) pthread_join(t[i], NULL);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (argc > 2) threads = atoi(argv[2]);
    if (argc > 3) scale = atol(argv[3]);
    if (threads < 1 || threads > 1024 || scale < 1) { fprintf(stderr, "shapes: bad THREADS or SCALE\n"); return 2; }
    double start = now();
    if (strcmp(mode, "xmalloc") == 0) {
        int producers = threads > 1 ? threads / 2 : 1;
        queue.producers_left = producers;
        pthread_t t[1024];
        for (int i = 0; i < producers; i++) pthread_create(&t[i], NULL, producer, (void *)(intptr_t)i);
        int consumers = threads > 1 ? threads - producers : 1;
        for (int i = 0; i < consumers; i++) pthread_create(&t[producers + i], NULL, consumer, NULL);
        for (int i = 0; i < producers + consumers; i++) pthread_join(t[i], NULL);
    } else if (strcmp(mode, "cache-scratch") == 0 || strcmp(mode, "cache-thrash") == 0) {
        passive = strcmp(mode, "cache-scratch") == 0;
        if (passive) for (int i = 0; i < threads; i++) scratch_objects[i] = xmalloc(8);
        run_threads(false_sharing, threads);
    } else if (strcmp(mode, "mstress") == 0) {
        pthread_barrier_init(&mstress_barrier, NULL, (unsigned)threads);
        run_threads(mstress, threads);
    } else if (strcmp(mode, "malloc-large") == 0) {
        run_threads(large, threads);
    } else if (strcmp(mode, "simple") == 0) {
        simple();
    } else if (strcmp(mode, "thread") == 0) {
        run_threads(thread_bench, threads);
    } else {
        fprintf(stderr, "usage: shapes xmalloc|cache-scratch|cache-thrash|mstress|malloc-large|simple|thread [THREADS] [SCALE]\n");
        return 2;
    }
    printf("time %.3f\nchecksum 0x%016" PRIx64 "\n", now() - start, (uint64_t)atomic_load(&checksum));
    return 0;
}
