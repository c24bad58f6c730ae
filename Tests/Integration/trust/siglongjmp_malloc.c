/* siglongjmp_malloc.c — a SIGALRM handler that siglongjmps out, possibly out
 * of a malloc or free it interrupted (leaving whatever that call held), while
 * main churns buffers; after a few hundred jumps the program frees one buffer
 * twice.  slabguard must say so — the duplicate free's report, or "malloc
 * re-entered from a signal handler" if a jump left one of its locks held —
 * and abort: never hang waiting on a lock the thread itself holds. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static sigjmp_buf back;
static volatile sig_atomic_t jumps;

static void on_alarm(int sig) {
    (void)sig;
    jumps++;
    siglongjmp(back, 1);
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    sigemptyset(&action.sa_mask);
    sigaction(SIGALRM, &action, NULL);
    static void *slots[256];
    static unsigned state = 777;
    struct itimerval timer = {{0, 150}, {0, 150}};
    setitimer(ITIMER_REAL, &timer, NULL);
    sigsetjmp(back, 1);
    while (jumps < 300) {
        state = state * 1103515245u + 12345u;
        unsigned slot = (state >> 8) % 256;
        free(slots[slot]);
        slots[slot] = malloc(16 + (state >> 16) % 3000);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    char *twice = malloc(48);
    free(twice);
    free(twice);
    printf("not reached\n");
    return 0;
}
