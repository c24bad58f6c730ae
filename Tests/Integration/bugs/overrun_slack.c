/* realloc to 40 bytes, then 48 written: under guards the 8 bytes past the end lie before
 * the guard page (a 16-byte-aligned buffer cannot end on it), so the overrun is found at
 * free — with the damaged byte's value and the redzone's, as a slab buffer's report has. */
#include <stdlib.h>
#include <string.h>

int main(void) {
    char *p = malloc(24);
    p = realloc(p, 40);
    memset(p, 'A', 48);
    free(p);
    return 0;
}
