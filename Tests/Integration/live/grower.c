/* A slow leaker for the live commands: 50 buffers of 100 bytes every 10 ms, kept, until
 * killed (at most 20 s).  Prints "ready" once its first buffers exist. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    for (int i = 0; i < 2000; i++) {
        for (int k = 0; k < 50; k++) {
            char *p = malloc(100);
            p[0] = (char)k;
        }
        if (i == 0) { puts("ready"); fflush(stdout); }
        usleep(10000);
    }
    return 0;
}
