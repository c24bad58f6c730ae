/* A plugin whose buffers come from libc on its behalf (strdup): charged to the plugin.
 * plugin_churn allocates and frees `n` buffers of 32 bytes. */
#include <stdlib.h>
#include <string.h>
static char *names[2];
void plugin_start(void) { names[0] = strdup("first name"); names[1] = strdup("second"); }
void plugin_churn(int n) {
    for (int i = 0; i < n; i++) {
        void *volatile p = malloc(32);
        free(p);
    }
}
