/* main leaks 1234 bytes on purpose and ends with pthread_exit; a worker runs on for
 * 200 ms and then exits the process.  Prints "ok leader_exit" from the worker. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *volatile leaked;

static void *worker(void *unused) {
    (void)unused;
    struct timespec t = {0, 200000000};
    while (nanosleep(&t, &t) != 0) {}
    printf("ok leader_exit\n");
    exit(0);
}

int main(void) {
    leaked = malloc(1234);
    memset(leaked, 7, 1234);
    leaked = NULL;
    pthread_t thread;
    pthread_create(&thread, NULL, worker, NULL);
    pthread_exit(NULL);
}
