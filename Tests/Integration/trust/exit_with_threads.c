/* exit_with_threads.c — a correct program whose main returns while worker
 * threads are still allocating and freeing: small buffers (1–5000 B) and big
 * ones (0.2–3 MB, page-arena spans), each thread keeping its live buffers in a
 * ring of slots on its own stack and in one pointer-only register-held cursor.
 * exit() then runs slabguard's leak scan with the threads going on.  Expected
 * under --debug default: no report, exit status 0. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4
#define SLOTS 64

static void *churn(void *arg) {
    uint64_t state = 0x9E3779B97F4A7C15ull * (uint64_t)(uintptr_t)arg + 1;
    void *slots[SLOTS] = {0};
    for (;;) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        size_t i = state % SLOTS;
        size_t size = (state >> 8) % 16 == 0 ? 200000 + (state >> 12) % 2800000 : 1 + (state >> 12) % 5000;
        free(slots[i]);
        slots[i] = malloc(size);
        if (slots[i] != NULL) {
            memset(slots[i], (int)i, size < 64 ? size : 64);
            ((char *)slots[i])[size - 1] = 1;
        }
    }
    return NULL;
}

int main(void) {
    for (intptr_t t = 0; t < THREADS; t++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, churn, (void *)t) != 0) return 1;
        pthread_detach(thread);
    }
    struct timespec pause = {0, 30 * 1000 * 1000};
    nanosleep(&pause, NULL);
    printf("ok exit_with_threads\n");
    fflush(stdout);
    return 0;   /* the workers are still running */
}
