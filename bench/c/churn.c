/*
 * churn.c — an allocation-heavy C workload for comparing malloc implementations
 * (glibc, slabguard under LD_PRELOAD, AddressSanitizer) on the same program.
 *
 * Usage: churn [random|larson] [THREADS] [ITERATIONS]
 *
 *   random (default)  design.md §5's reference workload. Every thread owns 1000
 *                     live slots. One iteration frees the buffer of a random slot
 *                     and allocates a new one of a random size 16–1024 B, then
 *                     touches it: one byte in every 64 (one per cache line) and
 *                     the last byte.
 *   larson            a server-like loop with many sizes and cross-thread frees.
 *                     Sizes 8 B–8 KiB, and 1 in 128 from 8 KiB–64 KiB. Slot
 *                     arrays ("bins", one more than threads) circulate: every
 *                     10,000 iterations a thread leaves its bin at a shared
 *                     exchange point and takes the one waiting there, usually
 *                     left by another thread, so most frees release memory
 *                     another thread allocated.
 *
 *   THREADS           worker threads (default 2). With 1 the work runs on the
 *                     main thread, so a single-threaded program stays one (glibc
 *                     keeps its single-thread fast path, as in a real program).
 *   ITERATIONS        iterations (one free + one malloc) per thread
 *                     (default 15,000,000 for random, 2,000,000 for larson).
 *
 * Output (stdout):
 *   time 0.532             wall seconds (CLOCK_MONOTONIC) from the creation of
 *                          the threads to the last join, every buffer freed
 *   checksum 0x...         sum of the first and last byte of every buffer
 *                          allocated; it depends only on the seeds, so it is the
 *                          same under every allocator (and keeps the work alive)
 *
 * Every thread has its own xorshift64* generator with a fixed seed, so each run
 * makes the same requests in the same order per thread.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    SLOTS = 1000,              /* live buffers per thread (per bin for larson) */
    LINE = 64,                 /* touch stride: one write per cache line */
    LARSON_EXCHANGE = 10000,   /* larson: iterations between bin exchanges */
    MAX_THREADS = 1024,        /* sanity limit on the argument */
};

/* ---- random numbers ------------------------------------------------------ */

/* xorshift64* (Marsaglia's xorshift with a multiplicative output scramble). */
typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* A fixed, distinct, non-zero seed per thread. */
static rng_t rng_for_thread(unsigned index)
{
    rng_t r = { (UINT64_C(0x9E3779B97F4A7C15) * (index + 1)) ^ UINT64_C(0xC0FFEE1234567) };
    for (int i = 0; i < 8; i++) (void)rng_next(&r);   /* leave the seed's neighbourhood */
    return r;
}

/* A uniform-enough value in [0, n) for small n: the high 32 bits, scaled. */
static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* ---- buffers ------------------------------------------------------------- */

typedef struct {
    unsigned char *ptr;
    size_t size;
} slot_t;

/* Allocate `size` bytes and write `mark` into one byte per cache line and the
 * last byte, as a program filling a structure would. Exits on failure. */
static unsigned char *new_buffer(size_t size, unsigned char mark)
{
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "churn: malloc(%zu) failed\n", size);
        exit(1);
    }
    for (size_t i = 0; i < size; i += LINE) p[i] = mark;
    p[size - 1] = mark;
    return p;
}

/* Read the buffer back (first and last byte) into the checksum, then free it. */
static inline void release(slot_t *s, uint64_t *sum)
{
    *sum += (uint64_t)s->ptr[0] + s->ptr[s->size - 1];
    free(s->ptr);
    s->ptr = NULL;
}

static inline size_t random_size(rng_t *r)
{
    return 16 + rng_below(r, 1024 - 16 + 1);           /* 16 ... 1024 */
}

static inline size_t larson_size(rng_t *r)
{
    if (rng_below(r, 128) == 0)
        return 8192 + rng_below(r, 65536 - 8192 + 1);  /* 8 KiB ... 64 KiB */
    return 8 + rng_below(r, 8192 - 8 + 1);             /* 8 B ... 8 KiB */
}

/* ---- the larson bin exchange -------------------------------------------- */

/* One bin more than threads exists; the extra one waits here. A thread swapping
 * leaves its bin and takes the waiting one, which the previous swapper left
 * (usually another thread). Touched once per LARSON_EXCHANGE iterations, so a
 * mutex is fine. */
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t *exchange_waiting;

static slot_t *exchange_swap(slot_t *mine)
{
    pthread_mutex_lock(&exchange_lock);
    slot_t *theirs = exchange_waiting;
    exchange_waiting = mine;
    pthread_mutex_unlock(&exchange_lock);
    return theirs;
}

/* ---- workers ------------------------------------------------------------- */

typedef enum { MODE_RANDOM, MODE_LARSON } workload_t;

typedef struct {
    unsigned index;
    workload_t mode;
    long iterations;
    slot_t *slots;       /* this thread's slots (larson: its first bin) */
    uint64_t checksum;   /* out */
    pthread_t thread;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    rng_t rng = rng_for_thread(w->index);
    uint64_t sum = 0;
    slot_t *slots = w->slots;
    int larson = w->mode == MODE_LARSON;

    for (int i = 0; i < SLOTS; i++) {
        size_t size = larson ? larson_size(&rng) : random_size(&rng);
        slots[i].size = size;
        slots[i].ptr = new_buffer(size, (unsigned char)rng_next(&rng));
    }

    for (long n = 0; n < w->iterations; n++) {
        if (larson && n > 0 && n % LARSON_EXCHANGE == 0)
            slots = exchange_swap(slots);
        slot_t *s = &slots[rng_below(&rng, SLOTS)];
        release(s, &sum);
        uint64_t r = rng_next(&rng);
        size_t size = larson ? larson_size(&rng) : random_size(&rng);
        s->size = size;
        s->ptr = new_buffer(size, (unsigned char)r);
    }

    /* random: free our own slots. larson: the bins are freed by main once every
     * thread is done (a bin may be in the exchange or with another thread). */
    if (!larson)
        for (int i = 0; i < SLOTS; i++) release(&slots[i], &sum);

    w->checksum = sum;
    return NULL;
}

/* ---- main ---------------------------------------------------------------- */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long parse_positive(const char *text, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0) {
        fprintf(stderr, "churn: bad %s '%s' (want a positive integer)\n", what, text);
        exit(2);
    }
    return v;
}

static void usage_exit(void)
{
    fprintf(stderr, "usage: churn [random|larson] [THREADS] [ITERATIONS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    workload_t mode = MODE_RANDOM;
    int arg = 1;
    if (arg < argc && (argv[arg][0] < '0' || argv[arg][0] > '9')) {
        if (strcmp(argv[arg], "random") == 0) mode = MODE_RANDOM;
        else if (strcmp(argv[arg], "larson") == 0) mode = MODE_LARSON;
        else usage_exit();
        arg++;
    }
    long threads = 2;
    long iterations = mode == MODE_LARSON ? 2000000 : 15000000;
    if (arg < argc) threads = parse_positive(argv[arg++], "thread count");
    if (arg < argc) iterations = parse_positive(argv[arg++], "iteration count");
    if (arg < argc) usage_exit();
    if (threads > MAX_THREADS) {
        fprintf(stderr, "churn: at most %d threads\n", MAX_THREADS);
        return 2;
    }

    /* Slot arrays: one per thread, plus the spare bin waiting in the larson
     * exchange. Allocated before the clock starts, like the worker records. */
    long bins = mode == MODE_LARSON ? threads + 1 : threads;
    slot_t **bin = calloc((size_t)bins, sizeof *bin);
    worker_t *workers = calloc((size_t)threads, sizeof *workers);
    if (bin == NULL || workers == NULL) return 1;
    for (long b = 0; b < bins; b++) {
        bin[b] = calloc(SLOTS, sizeof(slot_t));
        if (bin[b] == NULL) return 1;
    }
    if (mode == MODE_LARSON) {
        /* The spare bin starts with buffers too, from its own generator. */
        rng_t rng = rng_for_thread((unsigned)threads);
        for (int i = 0; i < SLOTS; i++) {
            bin[threads][i].size = larson_size(&rng);
            bin[threads][i].ptr = new_buffer(bin[threads][i].size, (unsigned char)rng_next(&rng));
        }
        exchange_waiting = bin[threads];
    }
    for (long t = 0; t < threads; t++) {
        workers[t].index = (unsigned)t;
        workers[t].mode = mode;
        workers[t].iterations = iterations;
        workers[t].slots = bin[t];
    }

    double start = now();
    if (threads == 1) {
        worker(&workers[0]);
    } else {
        for (long t = 0; t < threads; t++) {
            int rc = pthread_create(&workers[t].thread, NULL, worker, &workers[t]);
            if (rc != 0) {
                fprintf(stderr, "churn: pthread_create: %s\n", strerror(rc));
                return 1;
            }
        }
        for (long t = 0; t < threads; t++) pthread_join(workers[t].thread, NULL);
    }
    uint64_t checksum = 0;
    if (mode == MODE_LARSON)   /* every bin is back in main's hands: free them all */
        for (long b = 0; b < bins; b++)
            for (int i = 0; i < SLOTS; i++) release(&bin[b][i], &checksum);
    double elapsed = now() - start;

    for (long t = 0; t < threads; t++) checksum += workers[t].checksum;
    for (long b = 0; b < bins; b++) free(bin[b]);
    free(bin);
    free(workers);

    printf("time %.3f\n", elapsed);
    printf("checksum 0x%016" PRIx64 "\n", checksum);
    return 0;
}
