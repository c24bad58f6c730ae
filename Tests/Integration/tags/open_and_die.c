/* Loads the plugin named by argv[1] and is killed (SIGKILL) right away: nothing at exit
 * writes the log's module map, so only dlopen's own hook can have put the plugin there. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    ((void (*)(void))dlsym(h, "plugin_start"))();
    raise(SIGKILL);
    return 0;
}
