// Bug corpus: a stale write after other allocation traffic (sizes of other
// classes, so the freed buffer stays free), then reuse of its size.
// Expected: "slabguard: buffer modified after being freed", with retire_record
// (where the buffer was freed) in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile stale;
static void *volatile sink;

__attribute__((noinline)) static void scribble_stale(void) {
    memcpy(stale + 40, "oops", 4); /* BUG: the buffer was freed long ago */
}

__attribute__((noinline)) static void retire_record(void) {
    free(stale);
    sink = 0;
}

int main(void) {
    stale = malloc(200);
    memset(stale, 'a', 200);
    retire_record();
    void *held[1000];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++) { held[i] = malloc(16 + (i % 7) * 24); memset(held[i], i, 16); }
        for (int i = 0; i < 1000; i++) free(held[i]);
    }
    scribble_stale();
    for (int i = 0; i < 20000; i++) { void *p = malloc(200); sink = p; }
    puts("not reached");
    return 0;
}
