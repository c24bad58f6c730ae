// Control for the bug corpus: correct multithreaded churn — random sizes,
// frees in other threads, realloc, calloc — must give no report under
// --debug default.  Prints "ok clean_churn".
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define SLOTS 512
#define ROUNDS 40000

static void *volatile shared[THREADS][SLOTS];

static void *worker(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (id + 1);
    for (int r = 0; r < ROUNDS; r++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        unsigned owner = (unsigned)(seed % THREADS), slot = (unsigned)((seed >> 8) % SLOTS);
        size_t size = 1 + (size_t)((seed >> 20) % 1500);
        void *fresh;
        switch ((seed >> 40) % 3) {
        case 0: fresh = malloc(size); memset(fresh, (int)r, size); break;
        case 1: fresh = calloc(1, size); break;
        default: fresh = realloc(NULL, size); memset(fresh, 1, size); break;
        }
        void *old = __atomic_exchange_n((void **)&shared[owner][slot], fresh, __ATOMIC_ACQ_REL);
        if (old && (seed >> 50) % 4 == 0) {
            old = realloc(old, size * 2);
            memset(old, 2, size * 2);
        }
        free(old);
    }
    return NULL;
}

int main(void) {
    pthread_t threads[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int t = 0; t < THREADS; t++)
        for (int s = 0; s < SLOTS; s++) free(shared[t][s]);
    puts("ok clean_churn");
    return 0;
}
