/* signal_malloc.c — a SIGALRM handler that calls malloc and free while the
 * interrupted thread may be inside malloc or free itself (undefined behaviour,
 * but common).  A timer fires every 200 µs for about a second while main
 * churns buffers.  slabguard must never wait on a lock the thread already
 * holds: the run ends either cleanly ("ok signal_malloc", exit 0) or with the
 * report "slabguard: malloc re-entered from a signal handler" and SIGABRT —
 * never a hang. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t ticks;

static void on_alarm(int sig) {
    (void)sig;
    void *p = malloc(32 + (size_t)(ticks % 200) * 16);
    if (p != NULL) memset(p, 1, 32);
    free(p);
    ticks++;
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &action, NULL);
    struct itimerval timer = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &timer, NULL);
    void *slots[256] = {0};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned state = 12345;
    do {
        for (int i = 0; i < 10000; i++) {
            state = state * 1103515245u + 12345u;
            unsigned slot = (state >> 8) % 256;
            free(slots[slot]);
            slots[slot] = malloc(16 + (state >> 16) % 3000);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 1 || ticks < 100);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int i = 0; i < 256; i++) free(slots[i]);
    printf("ok signal_malloc %d\n", ticks > 0);
    return 0;
}
