/* stale_writes.c — writes `default` used to miss (issue 8, item 8): each lands in a freed
 * buffer that is not handed out again before the program ends, so only the quarantine's
 * check at release or the heap verification at exit can see it.  Compiled at -O0.
 *   realloc    writes through the old pointer after realloc moved the buffer
 *   stray      writes 200 bytes past a 64-byte buffer, into its freed neighbours
 *   patch      a deferred patch list writes into a buffer freed since the patch was queued
 *   underflow  writes one byte before a 64-byte buffer (and, with "large", a 100000-byte one)
 *   reused     frees a buffer, allocates the same size, writes through the stale pointer:
 *              without a quarantine the new buffer IS the old one, and the write is silent
 * Each exits 0; slabguard should say "buffer modified after being freed" ("redzone
 * violation: write before start of buffer" for the underflow). */
#include <stdlib.h>
#include <string.h>

static void *volatile keep[64];

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "realloc") == 0) {
        char *p = malloc(100);
        char *q = realloc(p, 5000);   /* moves: another size class */
        keep[0] = q;
        p[10] = 'x';                  /* the old pointer */
        free(q);
        return 0;
    }
    if (strcmp(mode, "stray") == 0) {
        char *b[8];
        for (int i = 0; i < 8; i++) b[i] = malloc(64);
        for (int i = 1; i < 8; i++) free(b[i]);
        keep[1] = b[0];
        memset(b[0] + 64, 'y', 200);  /* past the end, over the freed neighbours */
        return 0;
    }
    if (strcmp(mode, "patch") == 0) {
        struct patch { long *where; long value; } list[4];
        long *record = malloc(48);
        list[0].where = &record[3];
        list[0].value = 42;
        free(record);                 /* freed before the patches run */
        for (int i = 0; i < 1; i++) *list[i].where = list[i].value;
        return 0;
    }
    if (strcmp(mode, "underflow") == 0) {
        size_t n = argc > 2 && strcmp(argv[2], "large") == 0 ? 100000 : 64;
        char *a = malloc(n), *b = malloc(n);
        keep[3] = a;
        b[-1] = 'u';                  /* one byte before b */
        free(b);
        return 0;
    }
    if (strcmp(mode, "reused") == 0) {
        char *p = malloc(64);
        free(p);
        char *q = malloc(64);
        keep[2] = q;
        p[8] = 'z';                   /* stale: into q itself when p was handed out again */
        free(q);
        return 0;
    }
    return 64;
}
