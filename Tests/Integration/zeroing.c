/* calloc and friends: overflow gives NULL with ENOMEM, a huge but valid
 * request is zeroed (or NULL), reused memory comes back zeroed; malloc(0) is
 * a unique pointer; malloc(SIZE_MAX) and reallocarray overflow fail cleanly. */
#include "sgcheck.h"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>

static void all_zero(const unsigned char *p, size_t n, size_t step) {
    for (size_t i = 0; i < n; i += step) CHECK(p[i] == 0);
    if (n) CHECK(p[n - 1] == 0);
}

int main(void) {
    require_slabguard();
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(opaque((size_t)1 << 33), (size_t)1 << 33) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1, opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX - 4096)) == NULL && errno == ENOMEM);

    /* Huge but valid: either zeroed memory or NULL/ENOMEM, never garbage. */
    size_t sizes[] = {(size_t)1 << 30, (size_t)3 << 30};
    for (int i = 0; i < 2; i++) {
        errno = 0;
        unsigned char *big = calloc(1, opaque(sizes[i]));
        if (big) {
            all_zero(big, sizes[i], 1 << 20);
            big[sizes[i] / 2] = 1;
            free(big);
        } else {
            CHECK(errno == ENOMEM);
        }
    }

    /* Dirty memory, freed, must come back zeroed from calloc (all size ranges). */
    for (int round = 0; round < 3; round++) {
        for (size_t size = 1; size < 300000; size = size * 3 / 2 + 1) {
            unsigned char *dirty[8];
            for (int k = 0; k < 8; k++) { dirty[k] = malloc(size); CHECK(dirty[k]); memset(dirty[k], 0xEE, size); }
            for (int k = 0; k < 8; k++) free(dirty[k]);
            for (int k = 0; k < 8; k++) { dirty[k] = calloc(size, 1); CHECK(dirty[k]); all_zero(dirty[k], size, 1); }
            for (int k = 0; k < 8; k++) free(dirty[k]);
            unsigned char *z = calloc(3, size);
            CHECK(z);
            all_zero(z, 3 * size, 1);
            free(z);
        }
    }

    /* malloc(0): a unique, freeable pointer every time. */
    void *zeros[256];
    for (int i = 0; i < 256; i++) {
        zeros[i] = malloc(0);
        CHECK(zeros[i] != NULL);
        for (int j = 0; j < i; j++) CHECK(zeros[j] != zeros[i]);
    }
    for (int i = 0; i < 256; i++) free(zeros[i]);
    void *c0 = calloc(0, 0);
    CHECK(c0 != NULL);
    free(c0);

    /* reallocarray: overflow is NULL + ENOMEM and leaves the block alone. */
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++) a[i] = i;
    errno = 0;
    CHECK(reallocarray(a, opaque(SIZE_MAX / 2), 4) == NULL && errno == ENOMEM);
    for (int i = 0; i < 10; i++) CHECK(a[i] == i);
    a = reallocarray(a, 1000, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++) CHECK(a[i] == i);
    free(a);
    free(NULL);
    printf("ok zeroing\n");
    return 0;
}
