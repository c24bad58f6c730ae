/* Allocates and frees records for ever (a ring of 64, each replaced in turn), printing
 * "ready" after 100,000; the test then kills it with SIGKILL and reads its log. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *keep[64];

__attribute__((noinline)) static void *make_record(int i) { return malloc(32 + (i % 64)); }
__attribute__((noinline)) static void drop_record(void *p) { free(p); }

int main(void) {
    for (long i = 0;; i++) {
        drop_record(keep[i % 64]);
        keep[i % 64] = make_record((int)i);
        if (i == 100000) { printf("ready\n"); fflush(stdout); }
        if (i > 100000) usleep(100);
    }
}
