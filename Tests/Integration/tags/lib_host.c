/* Loads the plugin named by argv[1] (argv[2] "name": by file name only, found through the
 * host's DT_RUNPATH), starts it, prints the statistics, unloads it. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "slabguard.h"
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    ((void (*)(void))dlsym(h, "plugin_start"))();
    sg_stats_print(1);
    fflush(stdout);
    dlclose(h);
    puts("unloaded");
    return 0;
}
