/* fork_busy.c — fork while every slabguard subsystem is busy in another thread:
 * heap churn (slabs, depot, arena), quarantine churn, heap verification
 * (sg_verify walks every slab under its lock), leak scans and their reports
 * (sg_find_leaks: symbolization, module map, ELF symbol cache, report lock),
 * big buffers (page-arena spans).  Each child allocates, verifies and
 * symbolizes too, then exits; a child that does not finish within 10 s was
 * left holding a lock its parent's thread had: the program says so and fails.
 * With the argument "blocked" every thread blocks every signal (as threads started
 * by a test runner's worker often do): the leak scans then park threads rather than
 * stop them, and the verifier's loop on the cache registry once starved fork for
 * minutes.  Run preloaded with SLABGUARD_DEBUG=default,quarantine=1M,noabort.
 * Prints "ok fork_busy" and exits 0 when every child finished. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static size_t (*verify)(void);
static size_t (*find_leaks)(void);
static volatile int stop;
static void *kept_leak;

static void *churn(void *arg) {
    unsigned state = (unsigned)(size_t)arg * 7919u + 1;
    void *slots[128] = {0};
    while (!stop) {
        state = state * 1103515245u + 12345u;
        unsigned i = (state >> 8) % 128;
        free(slots[i]);
        slots[i] = malloc((state >> 20) % 64 == 0 ? 100000 : 8 + (state >> 12) % 2000);
    }
    for (int i = 0; i < 128; i++) free(slots[i]);
    return NULL;
}

static void *verifier(void *arg) {
    (void)arg;
    while (!stop) verify();
    return NULL;
}

static void *leak_scanner(void *arg) {
    (void)arg;
    for (int i = 0; i < 6 && !stop; i++) find_leaks();   /* reports the one kept buffer */
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "blocked") == 0) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    }
    verify = (size_t (*)(void))dlsym(RTLD_DEFAULT, "sg_verify");
    find_leaks = (size_t (*)(void))dlsym(RTLD_DEFAULT, "sg_find_leaks");
    if (verify == NULL || find_leaks == NULL) { fprintf(stderr, "not running on slabguard\n"); return 1; }
    /* One buffer nothing points to (the pointer is hidden), for the leak reports. */
    kept_leak = malloc(40);
    kept_leak = (void *)((size_t)kept_leak ^ 0x5555);
    pthread_t threads[5];
    void *(*bodies[5])(void *) = {churn, churn, verifier, leak_scanner, churn};
    for (int t = 0; t < 5; t++) pthread_create(&threads[t], NULL, bodies[t], (void *)(size_t)t);
    int hung = 0;
    for (int round = 0; round < 40 && !hung; round++) {
        pid_t child = fork();
        if (child == 0) {
            void *p[64];
            for (int i = 0; i < 64; i++) p[i] = malloc(16 + 100 * (size_t)i);
            for (int i = 0; i < 64; i++) free(p[i]);
            void *big = malloc(300000);
            free(big);
            verify();
            _exit(0);
        }
        int status = 0;
        struct timespec pause = {0, 10 * 1000 * 1000};
        int waited = 0;
        while (waitpid(child, &status, WNOHANG) == 0) {
            if (++waited > 1000) {
                fprintf(stderr, "fork_busy: child %d hung (round %d)\n", (int)child, round);
                kill(child, SIGKILL);
                waitpid(child, &status, 0);
                hung = 1;
                break;
            }
            nanosleep(&pause, NULL);
        }
        if (!hung && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            fprintf(stderr, "fork_busy: child failed (status 0x%x)\n", status);
            hung = 1;
        }
    }
    stop = 1;
    for (int t = 0; t < 5; t++) pthread_join(threads[t], NULL);
    if (hung) return 1;
    printf("ok fork_busy\n");
    return 0;
}
