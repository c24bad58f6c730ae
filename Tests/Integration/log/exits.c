/* Prints its pid, allocates and frees a few buffers, and exits with status 0: a log
 * written to the end (RecorderFormatTests reads its header back). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
    for (int i = 1; i <= 16; i++) free(malloc(i * 24));
    return 0;
}
