/* Loads the plugin named by argv[1] and keeps pointers to its plugin_start: in a global
 * callback list (the host's data) and in a heap-allocated hook record.  Then unloads it
 * and goes on as if those pointers were still good (it never calls them). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

struct hook { const char *name; void (*run)(void); };

void (*callbacks[4])(void);   /* the host's list, left pointing into the plugin */
struct hook *volatile hook;

int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    void (*start)(void) = (void (*)(void))dlsym(h, "plugin_start");
    callbacks[2] = start;
    hook = malloc(sizeof *hook);
    hook->name = "tracer";
    hook->run = start;
    dlclose(h);
    puts("unloaded");
    return 0;
}
