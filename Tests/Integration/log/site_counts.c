/* Live bytes per allocation site over a whole run, past the transaction ring's window:
 * 1000 buffers of 100 bytes kept from keep_many, one 300000-byte buffer kept from
 * keep_big (a large span: never in the ring), then 600,000 mallocs and frees from
 * churn (1.2 million transactions: the log's ring of 2^20 entries wraps), all kept
 * buffers still referenced at exit (no leak). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *kept[1001];

__attribute__((noinline)) static void *keep_many(void) { return malloc(100); }
__attribute__((noinline)) static void *keep_big(void) { return malloc(300000); }
__attribute__((noinline)) static void churn(int i) { char *p = malloc(32 + (i & 63)); p[0] = 1; free(p); }

int main(void) {
    for (int i = 0; i < 1000; i++) { kept[i] = keep_many(); memset(kept[i], 1, 100); }
    kept[1000] = keep_big();
    for (int i = 0; i < 600000; i++) churn(i);
    printf("kept %p\n", kept[0]);
    return 0;
}
