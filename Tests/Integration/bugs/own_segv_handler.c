// A program with its own SIGSEGV handler (installed after start-up, as crash
// reporters do).  `./own_segv_handler uaf` reads a freed buffer: under guards
// slabguard explains it first, then the program's handler runs (chained).
// `./own_segv_handler null` dereferences NULL: not a heap error, so only the
// program's handler speaks.  The handler prints a line and exits with 3.
// `./own_segv_handler kernel` prints the SIGSEGV action the kernel holds before the
// program installs its own (asked with the raw system call, past the sigaction that
// slabguard exports): "kernel: default" or "kernel: installed".
#include <signal.h>
#include <sys/syscall.h>
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

struct kernel_action { void *handler; unsigned long flags; void *restorer; unsigned long mask; };

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "kernel") == 0) {
        struct kernel_action k;
        if (syscall(SYS_rt_sigaction, SIGSEGV, NULL, &k, 8) != 0) return 7;
        printf("kernel: %s\n", k.handler == (void *)SIG_DFL ? "default" : "installed");
        return 0;
    }
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
