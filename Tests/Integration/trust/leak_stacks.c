/* leak_stacks.c — leaks from three places: 3 small buffers from leak_small, 2 from
 * leak_other, 2 large ones (100 KiB, a span of their own) from leak_large.  Each place
 * is one report, with its own stack — under `guards`, where every buffer is a span,
 * too (all seven came out as one report, with one example stack). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile last;

__attribute__((noinline)) static void leak_small(void) { last = malloc(40); memset((void *)last, 1, 40); }
__attribute__((noinline)) static void leak_other(void) { last = malloc(40); memset((void *)last, 2, 40); }
__attribute__((noinline)) static void leak_large(void) { last = malloc(100 << 10); memset((void *)last, 3, 64); }

int main(void) {
    for (int i = 0; i < 3; i++) leak_small();
    for (int i = 0; i < 2; i++) leak_other();
    for (int i = 0; i < 2; i++) leak_large();
    last = NULL;
    printf("ok leak_stacks\n");
    return 0;
}
