/* Loads the plugin named by argv[1], starts it, unloads it, deletes its file. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
void *held;   /* the host's: reachable to the end */
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    void (*start)(void) = (void (*)(void))dlsym(h, "plugin_start");
    void *(*give)(void) = (void *(*)(void))dlsym(h, "plugin_give");
    start();
    held = give();
    dlclose(h);
    unlink(argv[1]);   /* the plugin's file is gone before anyone asks */
    puts("unloaded");
    return 0;
}
