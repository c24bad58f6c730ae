/* mmap_roots.c — a correct program that keeps its only pointers to 200 heap
 * buffers in memory it mapped itself, as CPython keeps objects in its pymalloc
 * arenas.  Linux merges an anonymous mapping with a neighbouring one of the same
 * kind into one /proc/self/maps line, so these regions often share a line with
 * slabguard's own metadata: the exit leak scan must still treat them as roots.
 * Expected under --debug default: no report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define REGIONS 8
#define PER_REGION 25

int main(void) {
    for (int r = 0; r < REGIONS; r++) {
        void **region = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) { perror("mmap"); return 1; }
        for (int i = 0; i < PER_REGION; i++) {
            /* Sizes in several classes, so slabguard maps metadata between regions. */
            region[i * 8] = malloc(24 + 40 * (size_t)(r * PER_REGION + i));
            if (region[i * 8] == NULL) return 1;
            memset(region[i * 8], r, 24);
        }
    }
    printf("ok mmap_roots\n");
    return 0;   /* the buffers stay reachable from the regions until exit */
}
