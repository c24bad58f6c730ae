/* stale_batch.c — 33 buffers freed (a thread's quarantine batch of 32 fills and joins
 * the shared queue, which under `quarantine=1` sends them all back to their cache at
 * once), then 33 allocated again — the same chunks — and leaked.  Valgrind: "definitely
 * lost: 1,320 bytes in 33 blocks".  The batch's thread-local slots still held the old
 * chunk addresses, and the leak scan reads thread-local storage as a root: 21 of the
 * 33 went unreported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile slot;

int main(void) {
    void *p[33];
    for (int i = 0; i < 33; i++) { p[i] = malloc(40); memset(p[i], 1, 40); }
    for (int i = 0; i < 33; i++) free(p[i]);
    for (int i = 0; i < 33; i++) { slot = malloc(40); memset((void *)slot, 2, 40); p[i] = NULL; }
    slot = NULL;
    printf("ok stale_batch\n");
    return 0;
}
