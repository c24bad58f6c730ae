/*
 * demo_plugin.c — the plugin `slabguard demo` loads and unloads (built as
 * libslabguard_demo_plugin.so, installed beside libslabguard_rt.so), for the
 * two bugs that happen at a module's unload (design §8):
 *   leak at unload   demo_plugin_start keeps two buffers only in the plugin's
 *                    own data; a host that unloads it without demo_plugin_stop
 *                    leaves them with nothing pointing at them;
 *   stale pointer    demo_plugin_register writes the plugin's callback into a
 *                    hook list the host owns; after the unload it points into
 *                    unmapped code.
 * The globals are exported so that no optimizer may drop the buffers.
 */
#include <stdlib.h>
#include <string.h>
#include "demo_plugin.h"

void *demo_plugin_state[2];

__attribute__((noinline)) static void *demo_plugin_make_table(size_t size) {
    void *table = malloc(size);
    if (table != NULL) memset(table, 0, size);
    return table;
}

void demo_plugin_start(void) {
    demo_plugin_state[0] = demo_plugin_make_table(256);
    demo_plugin_state[1] = demo_plugin_make_table(1024);
}

void demo_plugin_stop(void) {
    free(demo_plugin_state[0]);
    free(demo_plugin_state[1]);
    demo_plugin_state[0] = demo_plugin_state[1] = NULL;
}

void demo_plugin_tick(void) {}

void demo_plugin_register(void (**hook)(void)) { *hook = demo_plugin_tick; }
