// Bug corpus: free of a stack address (memory malloc never gave out).
// Expected: "slabguard: invalid free: buffer not in cache", free_foreign in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int after;

__attribute__((noinline)) static void free_foreign(void) {
    char local[64];
    memset(local, 0, sizeof local);
    char *volatile p = local;
    free(p); /* BUG: never allocated */
    after = local[3];
}

int main(void) {
    free_foreign();
    puts("not reached");
    return 0;
}
