// Bug corpus: the same buffer freed twice.
// Expected: "slabguard: duplicate free: buffer freed twice", with release_twice in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile keep;
static volatile int after;

__attribute__((noinline)) static void release_twice(char *p) {
    free(p);
    free(p); /* BUG: second free */
    after = 1;
}

int main(void) {
    keep = malloc(48);
    strcpy(keep, "hello");
    release_twice(keep);
    puts("not reached");
    return 0;
}
