// Bug corpus: buffers allocated into a local and never freed (several, so a
// stale copy of one pointer left in a register cannot hide them all from the
// conservative scan).
// Expected at exit: "slabguard: leak: ..." naming leak_buffer's allocation, exit status 0.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile last; /* cleared below: only a volatile store keeps GCC from eliding malloc */

__attribute__((noinline)) static size_t leak_buffer(const char *text) {
    char *copy = malloc(100); /* BUG: never freed */
    strcpy(copy, text);
    last = copy;
    size_t n = strlen(last);
    return n;
}

int main(void) {
    size_t n = 0;
    for (int i = 0; i < 8; i++) n += leak_buffer("leaked text");
    last = NULL;
    printf("length %zu\n", n);
    return 0;
}
