/* A plugin whose buffers come from libc on its behalf (strdup): charged to the plugin. */
#include <stdlib.h>
#include <string.h>
static char *names[2];
void plugin_start(void) { names[0] = strdup("first name"); names[1] = strdup("second"); }
