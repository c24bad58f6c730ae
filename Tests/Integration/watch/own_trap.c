/* A program with its own SIGTRAP handler (a debugger-less breakpoint counter): it must
 * keep seeing its traps, and nothing else, under watch. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t traps;
static void on_trap(int sig) { (void)sig; traps++; }

int main(void) {
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = on_trap;
    sigaction(SIGTRAP, &a, NULL);
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(32 + i % 64);
        memset(p, 1, 32);
        free(p);
        if (i % 250 == 0) raise(SIGTRAP);
    }
    printf("traps %d\n", (int)traps);
    return 0;
}
