/* A thread created with every signal blocked (it unblocks them 100 ms later, as a
 * runtime's worker does once set up, then sleeps) just before a dlclose that unmaps a
 * library.  Prints "ok new_thread_dlclose MS" with how long dlclose took, exits 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void *worker(void *unused) {
    (void)unused;
    long start = now_ms();
    while (now_ms() - start < 100) {}   /* running, every signal blocked */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0) {}
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *library = dlopen(argv[1], RTLD_NOW);
    if (library == NULL) { printf("dlopen: %s\n", dlerror()); return 1; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t thread;
    pthread_create(&thread, NULL, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    long start = now_ms();
    dlclose(library);
    long took = now_ms() - start;
    pthread_join(thread, NULL);
    printf("ok new_thread_dlclose %ld\n", took);
    return 0;
}
