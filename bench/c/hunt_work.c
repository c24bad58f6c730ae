/* For scripts/bench-hunt: an allocation-heavy program (2 M malloc/free of 16-1024 bytes
 * over 1000 live slots, as churn's random workload) with one stale write: a 64-byte
 * record freed early and written 1 ms later, found at exit by `default`.  The hunt's
 * replay arms that record's allocation site; its cost against a plain `default` run is
 * what the benchmark reports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct record { long refs; char name[56]; };

static struct record *make_record(void) { return malloc(sizeof(struct record)); }

int main(void) {
    static char *slots[1000];
    unsigned x = 12345;
    unsigned long sum = 0;
    struct record *r = make_record();
    r->refs = 1;
    free(r);                         /* freed early... */
    for (int i = 0; i < 2000000; i++) {
        x = x * 1103515245u + 12345u;
        int k = (x >> 8) % 1000;
        free(slots[k]);
        size_t n = 16 + (x >> 16) % 1009;
        slots[k] = malloc(n);
        slots[k][0] = (char)i;
        sum += (unsigned char)slots[k][n / 2];
        if (i == 1000) r->refs = 2;  /* ...and written later: the stale write */
    }
    for (int k = 0; k < 1000; k++) free(slots[k]);
    printf("%lu\n", sum);
    return 0;
}
