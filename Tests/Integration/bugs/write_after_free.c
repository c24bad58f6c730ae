// Bug corpus: a write into a buffer just freed; the next allocation of that
// size gets the buffer back and finds the 0xdeadbeef fill damaged.
// Expected: "slabguard: buffer modified after being freed", with release_message
// (where the buffer was freed) in a stack; with `guards` the write itself faults
// in corrupt_after_free.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile stale;
static void *volatile sink;

__attribute__((noinline)) static void corrupt_after_free(void) {
    stale[16] = 'X'; /* BUG: the buffer was freed */
}

__attribute__((noinline)) static void release_message(void) {
    free(stale);
    sink = 0;
}

int main(void) {
    stale = malloc(64);
    memset(stale, 'a', 64);
    release_message();
    corrupt_after_free();
    for (int i = 0; i < 8; i++) sink = malloc(64);
    puts("not reached");
    return 0;
}
