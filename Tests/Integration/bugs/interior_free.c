// Bug corpus: free of a pointer into the middle of a buffer.
// Expected: "slabguard: bad free: free address != alloc address", free_interior
// (the bad free) and make_record (the allocation) in the stacks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile keep;
static volatile int after;

__attribute__((noinline)) static void free_interior(char *p) {
    free(p + 16); /* BUG: not the address malloc returned */
    after = 1;
}

__attribute__((noinline)) static void make_record(void) {
    keep = malloc(64);
    memset(keep, 0, 64);
}

int main(void) {
    make_record();
    free_interior(keep);
    puts("not reached");
    return 0;
}
