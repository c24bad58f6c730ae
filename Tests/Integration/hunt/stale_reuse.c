/* A stale write after free, found when the buffer is reused: a record is freed, a
 * cached pointer to it is then written through (mark_stale, the line the hunt must
 * name), and enough 48-byte buffers go through the quarantine that the damaged one
 * comes back to an allocation, which checks its 0xdeadbeef fill. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record { long id; long flags; char name[32]; };

struct record *make_record(long id) {
    struct record *r = malloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->id = id;
    return r;
}

void mark_stale(struct record *r) {
    r->flags = 0x5a;                              /* STALE WRITE */
}

int main(void) {
    struct record *r = make_record(1);
    struct record *cached = r;
    free(r);
    mark_stale(cached);
    for (int i = 0; i < 60000; i++) {             /* through the quarantine: reuse */
        void *p = malloc(sizeof(struct record));
        memset(p, 0, sizeof(struct record));
        free(p);
    }
    puts("done");
    return 0;
}
