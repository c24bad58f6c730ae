// Bug corpus: a pointer freed, its memory handed out again and freed by its
// new owner, then the old pointer freed a second time.
// Expected: "slabguard: duplicate free: buffer freed twice", with
// release_stale in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static char *volatile old_owner;

__attribute__((noinline)) static void release_stale(void) {
    free(old_owner);   /* BUG: freed already, and reused since */
    sink = 0;   /* keeps this frame: no tail call into free */
}

int main(void) {
    old_owner = malloc(48);
    free(old_owner);
    char *new_owner = malloc(48);   /* the same buffer, most likely */
    memset(new_owner, 'n', 48);
    free(new_owner);
    release_stale();
    puts("not reached");
    return 0;
}
