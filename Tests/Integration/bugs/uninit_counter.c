// Bug corpus: a counter malloc'ed and incremented without being set to zero.
// With --debug default the value read is the 0xbaddcafe fill + 1; no report.
#include <stdio.h>
#include <stdlib.h>

static unsigned *volatile counter;

__attribute__((noinline)) static void count_event(void) {
    *counter += 1; /* BUG: never initialized */
}

int main(void) {
    counter = malloc(sizeof *counter);
    count_event();
    printf("count 0x%x\n", *counter);
    free(counter);
    return 0;
}
