// Bug corpus: realloc moves the buffer, the caller keeps writing through the
// old pointer, then the old size is allocated again.
// Expected: "slabguard: buffer modified after being freed", with grow_buffer
// (whose realloc freed the old buffer) in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile old;
static char *volatile grown;
static void *volatile sink;

__attribute__((noinline)) static void use_stale_after_realloc(void) {
    old[8] = '!'; /* BUG: realloc freed this buffer */
}

__attribute__((noinline)) static void grow_buffer(void) {
    grown = realloc(old, 8192); /* moves: another size class */
    sink = 0;
}

int main(void) {
    old = malloc(32);
    memset(old, 'a', 32);
    grow_buffer();
    if (grown == old) { puts("realloc did not move"); return 1; }
    use_stale_after_realloc();
    for (int i = 0; i < 8; i++) sink = malloc(32);
    puts("not reached");
    return 0;
}
