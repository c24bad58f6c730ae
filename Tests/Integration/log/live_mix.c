/* For the exports: two allocation sites that keep what they allocate (3 × 96 bytes from
 * keep_small, 2 × 5000 bytes from keep_large), and churn that frees what it allocates. */
#include <stdlib.h>
#include <string.h>

static void *kept[5];

static void *keep_small(void) { return malloc(96); }
static void *keep_large(void) { return malloc(5000); }

int main(void) {
    for (int i = 0; i < 2000; i++) { char *p = malloc(40 + i % 300); memset(p, 1, 40); free(p); }
    for (int i = 0; i < 3; i++) kept[i] = keep_small();
    for (int i = 3; i < 5; i++) kept[i] = keep_large();
    return kept[0] == NULL;
}
