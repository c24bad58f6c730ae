/* A correct program that frees and reuses buffers in four threads as fast as it can,
 * writing every byte of each buffer it owns: under watch=1 nothing may be reported. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *work(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    char *slots[64] = {0};
    unsigned long sum = 0;
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (seed >> 8) % 64;
        free(slots[k]);
        size_t n = 8 + (seed >> 16) % 200;
        slots[k] = malloc(n);
        memset(slots[k], (int)i, n);
        sum += (unsigned char)slots[k][n - 1];
    }
    for (int k = 0; k < 64; k++) free(slots[k]);
    return (void *)sum;
}

int main(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)(i + 1));
    unsigned long total = 0;
    for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); total += (unsigned long)r; }
    printf("total %lu\n", total);
    return 0;
}
