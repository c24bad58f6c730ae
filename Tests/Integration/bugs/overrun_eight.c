// Bug corpus: an array of 3 longs written with 4 elements (8 bytes past the end).
// Expected: "slabguard: redzone violation: write past end of buffer", overrun_by_eight in a stack.
#include <stdio.h>
#include <stdlib.h>

static volatile int count = 3;

__attribute__((noinline)) static long *overrun_by_eight(void) {
    long *values = malloc(count * sizeof(long));
    for (int i = 0; i <= count; i++) values[i] = i; /* BUG: <= writes one element too many */
    return values;
}

int main(void) {
    long *values = overrun_by_eight();
    printf("%ld\n", values[1]);
    free(values);
    puts("not reached");
    return 0;
}
