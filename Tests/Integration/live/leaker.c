/* A steady leaker for `slabguard leaks PID`: main drops 3 buffers of 64 bytes every
 * 50 ms (kept nowhere) and keeps one reachable buffer; "busy" adds three threads that
 * malloc and free without pause (so a check meets threads inside malloc); "blocked" the
 * same threads with every signal blocked; "forks" a thread that forks children (which
 * allocate and exit) without pause; "idle" makes no allocator call after its first
 * second; "exiting" calls exit after about a second with the busy threads still in
 * malloc and an exit handler that allocates for two seconds more (a request meets a
 * process in the middle of its exit).  Prints "ready", runs at most 20 s. */
#include <signal.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *kept;
static volatile int stop;

static void leak_three(void) {
    for (int i = 0; i < 3; i++) { char *p = malloc(64); p[0] = (char)i; }
}

static void *churn(void *arg) {
    if (arg != NULL) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    }
    while (!stop) { char *p = malloc(24 + (rand() & 255)); p[0] = 1; free(p); }
    return NULL;
}

static void *forker(void *arg) {
    (void)arg;
    while (!stop) {
        pid_t child = fork();
        if (child == 0) { char *p = malloc(100); p[0] = 1; free(p); _exit(0); }
        if (child > 0) waitpid(child, NULL, 0);
    }
    return NULL;
}

static void slow_exit(void) {
    for (int i = 0; i < 200; i++) { char *p = malloc(48); p[0] = 1; free(p); usleep(10000); }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    kept = malloc(100);
    pthread_t t[3];
    int busy = strcmp(mode, "busy") == 0 || strcmp(mode, "blocked") == 0 || strcmp(mode, "exiting") == 0;
    int forks = strcmp(mode, "forks") == 0;
    if (busy) for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, strcmp(mode, "blocked") == 0 ? (void *)1 : NULL);
    if (forks) pthread_create(&t[0], NULL, forker, NULL);
    puts("ready");
    fflush(stdout);
    for (int round = 0; round < 400; round++) {
        if (strcmp(mode, "idle") == 0 && round >= 20) { sleep(20); break; }
        if (strcmp(mode, "exiting") == 0 && round == 20) { atexit(slow_exit); exit(0); }
        leak_three();
        usleep(50000);
    }
    stop = 1;
    if (busy) for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    if (forks) pthread_join(t[0], NULL);
    return 0;
}
