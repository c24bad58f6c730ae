/* Loads the plugin named by argv[1], starts it, unloads it, and calls plugin_start again:
 * the late jump into unloaded code (a stale function pointer). */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    void (*start)(void) = (void (*)(void))dlsym(h, "plugin_start");
    start();
    dlclose(h);
    start();   /* the late jump: into the unloaded plugin */
    return 0;
}
