// Bug corpus: a string copied into a buffer one byte too small (the NUL overruns).
// Expected: "slabguard: redzone violation: write past end of buffer", overrun_by_one in a stack.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *volatile text = "thirteen char";

__attribute__((noinline)) static char *overrun_by_one(void) {
    size_t n = strlen(text);     /* 13 */
    char *copy = malloc(n);      /* BUG: no room for the NUL */
    memcpy(copy, text, n + 1);
    return copy;
}

int main(void) {
    char *copy = overrun_by_one();
    printf("%s\n", copy);
    free(copy);
    puts("not reached");
    return 0;
}
