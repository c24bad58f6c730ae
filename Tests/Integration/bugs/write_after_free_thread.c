// Bug corpus: one thread frees a buffer that another thread still writes to.
// Expected: "slabguard: buffer modified after being freed", with drop_shared
// (the freeing function, on the first thread) in a stack.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile shared;
static void *volatile sink;

__attribute__((noinline)) static void drop_shared(void) {
    free(shared);
    sink = 0;   /* keeps this frame: no tail call into free */
}

__attribute__((noinline)) static void *late_writer(void *arg) {
    (void)arg;
    memcpy(shared + 8, "late", 4);   /* BUG: the main thread freed it */
    return NULL;
}

int main(void) {
    shared = malloc(96);
    memset(shared, 'a', 96);
    drop_shared();
    pthread_t t;
    pthread_create(&t, NULL, late_writer, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < 20000; i++) { void *p = malloc(96); sink = p; }
    puts("not reached");
    return 0;
}
