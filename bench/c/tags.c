/* tags.c — sg_tag_alloc/sg_tag_free against sg_alloc/sg_free: 64-byte buffers, 16 live,
 * 16 M pairs each, one thread, five rounds; prints ns per pair of each (BENCHMARKS.md).  Build:
 *   gcc -O2 -I Sources/CSlabguardPreload/include bench/c/tags.c -L .build/release -lslabguard_rt \
 *       -Wl,-rpath,$PWD/.build/release -o /tmp/tags */
#include <stdio.h>
#include <time.h>
#include "slabguard.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    sg_tag_t *t = sg_tag_create("bench");
    void *p[16];
    for (int round = 0; round < 5; round++) {
        double a = now();
        for (int i = 0; i < 1000000; i++) { for (int k = 0; k < 16; k++) p[k] = sg_alloc(64); for (int k = 0; k < 16; k++) sg_free(p[k], 64); }
        double b = now();
        for (int i = 0; i < 1000000; i++) { for (int k = 0; k < 16; k++) p[k] = sg_tag_alloc(t, 64); for (int k = 0; k < 16; k++) sg_tag_free(t, p[k], 64); }
        double c = now();
        printf("sg_alloc %.1f ns/pair  sg_tag_alloc %.1f ns/pair\n", (b - a) / 16e6 * 1e9, (c - b) / 16e6 * 1e9);
    }
    return 0;
}
