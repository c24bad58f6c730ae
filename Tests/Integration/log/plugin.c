/* A plugin that leaks: plugin_start allocates three buffers and keeps them only in the
 * plugin's own data, which vanishes when the host unloads it; plugin_give hands the
 * host a fourth, which the host keeps. */
#include <stdlib.h>
#include <string.h>
static void *kept[3];
__attribute__((noinline)) static void *plugin_make_buffer(int i) { void *p = malloc(100 + i); memset(p, i, 100); return p; }
void plugin_start(void) { for (int i = 0; i < 3; i++) kept[i] = plugin_make_buffer(i); }
/* A buffer the host keeps: not a leak when the plugin goes. */
void *plugin_give(void) { return plugin_make_buffer(7); }
