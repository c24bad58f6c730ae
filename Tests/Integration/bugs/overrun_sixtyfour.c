// Bug corpus: a copy 64 bytes longer than its destination (a length in the
// wrong unit).  Expected: "slabguard: redzone violation: write past end of
// buffer", with release_record (where it is found) in a stack; with guards
// the write faults in fill_record.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static volatile size_t record_size = 100;

__attribute__((noinline)) static char *fill_record(void) {
    char *record = malloc(record_size);
    memset(record, 'r', record_size + 64);   /* BUG: 64 bytes too many */
    return record;
}

__attribute__((noinline)) static void release_record(char *record) {
    free(record);   /* the overrun is found here: the tag after the buffer is damaged */
    sink = 0;   /* keeps this frame: no tail call into free */
}

int main(void) {
    char *record = fill_record();
    printf("%c\n", record[0]);
    release_record(record);
    puts("not reached");
    return 0;
}
