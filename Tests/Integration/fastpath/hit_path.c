/* malloc and free of one size, N times: every call after the first hits the thread's
 * magazine (the hit path), so the instructions per call are the hit path's. */
#include <stdlib.h>
#include <stdio.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    void *volatile sink;
    for (long i = 0; i < n; i++) { void *p = malloc(32); sink = p; free(p); }
    (void)sink;
    return 0;
}
