/* A one-shot crash handler (SA_RESETHAND, as crash reporters install): it runs once,
 * checks the mask the kernel gives it (its sa_mask and, without SA_NODEFER, the signal
 * itself blocked), returns, and the fault then kills the process with SIGSEGV.
 * argv[1] "nodefer": SA_NODEFER, so SIGSEGV must not be blocked in the handler. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile int calls;
static int nodefer;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void handler(int sig) {
    (void)sig;
    calls++;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    say(sigismember(&now, SIGUSR1) ? "handler: SIGUSR1 blocked\n" : "handler: SIGUSR1 not blocked\n");
    say(sigismember(&now, SIGSEGV) ? "handler: SIGSEGV blocked\n" : "handler: SIGSEGV not blocked\n");
    if (calls > 1) { say("handler: called again\n"); _exit(3); }
}

int main(int argc, char **argv) {
    nodefer = argc > 1 && strcmp(argv[1], "nodefer") == 0;
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESETHAND | (nodefer ? SA_NODEFER : 0);
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, SIGUSR1);
    sigaction(SIGSEGV, &act, NULL);
    say("faulting\n");
    volatile int *null = NULL;
    *null = 1;
    say("not reached\n");
    return 0;
}
