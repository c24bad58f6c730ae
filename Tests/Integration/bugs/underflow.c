// Bug corpus: a write just before the start of a buffer (index -1).  Caught
// with guards: the bytes before a guarded buffer hold the redzone pattern.
// Expected: "slabguard: redzone violation: write past end of buffer" with
// "before the start of the buffer (underflow)", and store_before in a stack.
#include <stdio.h>
#include <stdlib.h>

static volatile int index_of_last = -1;

__attribute__((noinline)) static char *store_before(void) {
    char *text = malloc(64);
    text[index_of_last] = '!';   /* BUG: index -1 */
    return text;
}

int main(void) {
    char *text = store_before();
    text[0] = 0;
    free(text);
    puts("not reached");
    return 0;
}
