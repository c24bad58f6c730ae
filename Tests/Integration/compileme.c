/* A C file that gcc compiles under slabguard in the drop-in tests; the object
 * must be identical to one compiled without it, and the program must run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry { char key[16]; int value; struct entry *next; };

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static int compare(const void *a, const void *b) {
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    return strcmp(x->key, y->key);
}

int main(void) {
    struct entry *table[64] = {0}, *all[1000];
    for (int i = 0; i < 1000; i++) {
        struct entry *e = malloc(sizeof *e);
        snprintf(e->key, sizeof e->key, "k%04d", (i * 37) % 1000);
        e->value = i;
        unsigned b = hash(e->key) % 64;
        e->next = table[b];
        table[b] = e;
        all[i] = e;
    }
    qsort(all, 1000, sizeof all[0], compare);
    long sum = 0;
    for (int b = 0; b < 64; b++)
        for (struct entry *e = table[b]; e; e = e->next) sum += e->value * (b + 1);
    printf("%s %s %ld\n", all[0]->key, all[999]->key, sum);
    for (int i = 0; i < 1000; i++) free(all[i]);
    return 0;
}
