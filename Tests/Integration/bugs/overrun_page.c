// Bug corpus: a write a whole page (4096 bytes) past the end of a buffer:
// a length off by a page.  Expected: "slabguard: redzone violation: write
// past end of buffer", with release_table (where it is found) in a stack;
// with guards the write faults in clear_table.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static volatile size_t table_size = 2000;

__attribute__((noinline)) static char *clear_table(void) {
    char *table = malloc(table_size);
    memset(table, 0, table_size + 4096);   /* BUG: a page too many */
    return table;
}

__attribute__((noinline)) static void release_table(char *table) {
    free(table);   /* the overrun is found here: the tag after the buffer is damaged */
    sink = 0;   /* keeps this frame: no tail call into free */
}

int main(void) {
    char *table = clear_table();
    printf("%d\n", table[0]);
    release_table(table);
    puts("not reached");
    return 0;
}
