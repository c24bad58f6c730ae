/* Three 100-byte buffers leaked from one stack, on a thread that scrubs its stack before it
 * ends (no stale copy anywhere), and one 70-byte buffer a global holds.  sg_find_leaks()
 * then says 3 (printed) and reports them; the exit check does not report them again. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "slabguard.h"

static unsigned long *hidden;
static void *kept;

__attribute__((noinline)) static void leak_three(void) {
    for (int i = 0; i < 3; i++) hidden[i] = (unsigned long)malloc(100) ^ 0x5555555555555555UL;
}

__attribute__((noinline)) static void scrub(void) {
    volatile char b[65536];
    memset((char *)b, 0, sizeof b);
}

static void *run(void *unused) {
    (void)unused;
    leak_three();
    scrub();
    return NULL;
}

int main(void) {
    hidden = malloc(3 * sizeof *hidden);
    kept = malloc(70);
    pthread_t t;
    pthread_create(&t, NULL, run, NULL);
    pthread_join(t, NULL);
    printf("found %zu\n", sg_find_leaks());
    return 0;
}
