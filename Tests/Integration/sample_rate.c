/* sample=N: counts how many of 20000 live 100-byte buffers are guarded.  A
 * guarded buffer reports its requested size (100) as usable size; a size-class
 * buffer reports its class (112).  Prints "guarded K of 20000", frees all. */
#include "sgcheck.h"
#include <malloc.h>

#define COUNT 20000

int main(void) {
    require_slabguard();
    static void *held[COUNT];
    int guarded = 0;
    for (int i = 0; i < COUNT; i++) {
        held[i] = malloc(100);
        CHECK(held[i] != NULL);
        memset(held[i], 0x33, 100);
        if (malloc_usable_size(held[i]) == 100) guarded++;
    }
    for (int i = 0; i < COUNT; i++) free(held[i]);
    printf("guarded %d of %d\n", guarded, COUNT);
    return 0;
}
