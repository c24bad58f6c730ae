// Bug corpus (guards): a loop that reads one element past the end of an
// array.  The buffer ends where its guard page begins, so the read faults.
// Expected: "slabguard: redzone violation: write past end of buffer", "read
// at ... 0 bytes past the end of the buffer (its guard page)", sum_samples in
// the faulting stack.
#include <stdio.h>
#include <stdlib.h>

static volatile int count = 32;

__attribute__((noinline)) static long sum_samples(const long *samples, int n) {
    long sum = 0;
    for (int i = 0; i <= n; i++) sum += samples[i];   /* BUG: <= */
    return sum;
}

int main(void) {
    long *samples = malloc(count * sizeof *samples);
    for (int i = 0; i < count; i++) samples[i] = i;
    printf("%ld\n", sum_samples(samples, count));
    puts("not reached");
    return 0;
}
