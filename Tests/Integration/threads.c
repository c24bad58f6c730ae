/* 8 threads churn allocations of random sizes through a shared table of
 * slots: each allocation is stamped, swapped into a random slot, and whatever
 * was there (usually another thread's allocation) is checked and freed. */
#include "sgcheck.h"
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

#define THREADS 8
#define SLOTS 4096
#define ROUNDS 200000

static void *slots[SLOTS];

typedef struct { uint32_t size; uint32_t stamp; } header;

static void check_and_free(void *p) {
    if (!p) return;
    header *h = p;
    unsigned char *bytes = p;
    CHECK(h->size >= sizeof(header));
    CHECK(malloc_usable_size(p) >= h->size);
    for (uint32_t i = sizeof(header); i < h->size; i++) CHECK(bytes[i] == (unsigned char)(h->stamp + i));
    free(p);
}

static void *worker(void *arg) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uintptr_t)(arg + 1);
    for (int r = 0; r < ROUNDS; r++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t size = sizeof(header) + (uint32_t)(x % 64 == 0 ? x % 70000 : x % 600);
        unsigned char *p = malloc(size);
        CHECK(p != NULL);
        header *h = (header *)p;
        h->size = size;
        h->stamp = (uint32_t)(x >> 32);
        for (uint32_t i = sizeof(header); i < size; i++) p[i] = (unsigned char)(h->stamp + i);
        void *old = __atomic_exchange_n(&slots[(x >> 20) % SLOTS], p, __ATOMIC_ACQ_REL);
        check_and_free(old);
    }
    return NULL;
}

int main(void) {
    require_slabguard();
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < SLOTS; i++) check_and_free(slots[i]);
    printf("ok threads\n");
    return 0;
}
