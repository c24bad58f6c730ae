// A program with its own SIGSEGV handler (installed after start-up, as crash
// reporters do).  `./own_segv_handler uaf` reads a freed buffer: under guards
// slabguard explains it first, then the program's handler runs (chained).
// `./own_segv_handler null` dereferences NULL: not a heap error, so only the
// program's handler speaks.  The handler prints a line and exits with 3.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_segv(int sig) {
    (void)sig;
    static const char line[] = "own handler ran\n";
    write(1, line, sizeof line - 1);
    _exit(3);
}

static int *volatile target;

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) return 9;
    struct sigaction check;
    if (sigaction(SIGSEGV, NULL, &check) != 0 || check.sa_handler != on_segv) return 8;
    if (argc > 1 && strcmp(argv[1], "uaf") == 0) {
        target = malloc(64);
        free(target);
    }
    return *target;   /* faults either way */
}
