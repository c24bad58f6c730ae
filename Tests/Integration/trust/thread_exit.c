/* thread_exit.c — a correct program whose threads end with pthread_exit.
 * glibc then loads libgcc_s (to unwind the thread) and keeps its link map in
 * ld.so's memory: reachable, never a leak.  Expected under --debug default:
 * no report. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *worker(void *arg) {
    (void)arg;
    pthread_exit(NULL);
}

int main(void) {
    for (int i = 0; i < 2; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
        pthread_join(thread, NULL);
    }
    printf("ok thread_exit\n");
    return 0;
}
