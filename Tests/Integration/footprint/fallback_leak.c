/* With a tracer attached (as under a debugger: slabguard cannot stop the world with
 * ptrace), a leak of 4321 bytes while a thread sleeps
 * (tolerating EINTR: the fallback stops threads with a signal).  Prints
 * "ok fallback_leak" and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "traced.h"

static void *volatile leaked;

static void *sleeper(void *unused) {
    (void)unused;
    struct timespec t = {3, 0};
    while (nanosleep(&t, &t) != 0) {}
    return NULL;
}

int main(void) {
    if (start_tracer() != 0) { printf("no tracer\n"); return 1; }
    leaked = malloc(4321);
    memset(leaked, 7, 4321);
    leaked = NULL;
    pthread_t thread;
    pthread_create(&thread, NULL, sleeper, NULL);
    struct timespec settle = {0, 200000000};
    nanosleep(&settle, NULL);
    printf("ok fallback_leak\n");
    return 0;
}
