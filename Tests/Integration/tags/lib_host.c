/* Loads the plugin named by argv[1], starts it (with argv[2] "threads": and has 40 threads,
 * 8 at a time, each make and free 1000 buffers through it), prints the statistics, unloads it. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "slabguard.h"
static void (*churn)(int);
static void *worker(void *arg) { (void)arg; churn(1000); return NULL; }
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    ((void (*)(void))dlsym(h, "plugin_start"))();
    churn = (void (*)(int))dlsym(h, "plugin_churn");
    if (argc > 2 && strcmp(argv[2], "threads") == 0) {
        for (int round = 0; round < 5; round++) {
            pthread_t t[8];
            for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, NULL);
            for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
        }
    }
    sg_stats_print(1);
    fflush(stdout);
    churn = NULL;   /* no pointer into the plugin is left behind */
    dlclose(h);
    puts("unloaded");
    return 0;
}
