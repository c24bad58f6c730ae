/* Buffers from one allocation site, the fourth overrun by one byte: found at its free by
 * `default`; a hunt's replay (SLABGUARD_HUNT=overrun:…) names the writing line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *make_label(int n) { return malloc(n); }

int main(void) {
    for (int i = 0; i < 6; i++) {
        char *label = make_label(13);
        memset(label, 'a', 13);
        if (i == 3) label[13] = 'X';   /* the overrun */
        free(label);
    }
    puts("done");
    return 0;
}
