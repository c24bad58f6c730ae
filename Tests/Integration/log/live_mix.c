/* For the exports and the HTML report: two allocation sites whose buffers are dropped
 * (3 × 96 bytes from keep_small, 2 × 5000 bytes from keep_large: leaked, found by the exit
 * check), and churn that frees what it allocates. */
#include <stdlib.h>
#include <string.h>

static void *keep_small(void) { return malloc(96); }
static void *keep_large(void) { return malloc(5000); }

static int allocate_and_forget(void) {
    void *kept[5];
    for (int i = 0; i < 3; i++) kept[i] = keep_small();
    for (int i = 3; i < 5; i++) kept[i] = keep_large();
    int ok = kept[0] != NULL && kept[4] != NULL;
    memset(kept, 0, sizeof kept);   /* no copy of the pointers survives on the stack */
    return ok;
}

int main(void) {
    for (int i = 0; i < 2000; i++) { char *p = malloc(40 + i % 300); memset(p, 1, 40); free(p); }
    return allocate_and_forget() ? 0 : 1;
}
