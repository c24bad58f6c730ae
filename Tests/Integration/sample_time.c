/* sample=Nms: for 600 ms of wall time, allocates 100-byte buffers (held in a ring of
 * 64, so a guarded one is not freed at once) and counts how many are guarded (a
 * guarded buffer reports its requested size, 100, as usable size; a size-class
 * buffer its class, 112).  `slow` sleeps 50 us after every 100 allocations (a far
 * lower allocation rate).  Prints "guarded K of N". */
#include "sgcheck.h"
#include <malloc.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    require_slabguard();
    int slow = argc > 1 && strcmp(argv[1], "slow") == 0;
    static void *ring[64];
    long count = 0, guarded = 0;
    double end = now() + 0.6;
    struct timespec pause = { 0, 50 * 1000 };
    while (now() < end) {
        for (int i = 0; i < 100; i++, count++) {
            void **slot = &ring[count % 64];
            free(*slot);
            *slot = malloc(100);
            CHECK(*slot != NULL);
            memset(*slot, 0x44, 100);
            if (malloc_usable_size(*slot) == 100) guarded++;
        }
        if (slow) nanosleep(&pause, NULL);
    }
    for (int i = 0; i < 64; i++) free(ring[i]);
    printf("guarded %ld of %ld\n", guarded, count);
    return 0;
}
