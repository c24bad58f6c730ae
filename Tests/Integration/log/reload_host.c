/* Loads the plugin named by argv[1], starts and stops it, unloads it; twice. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    for (int round = 0; round < 2; round++) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
        ((void (*)(void))dlsym(h, "plugin_start"))();
        ((void (*)(void))dlsym(h, "plugin_stop"))();
        dlclose(h);
    }
    return 0;
}
