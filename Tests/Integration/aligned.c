/* Every aligned allocation function, every power-of-two alignment from 8 B to
 * 1 MiB, sizes around the class and page boundaries: alignment, usable size,
 * writability; then POSIX's error cases (EINVAL, ENOMEM, errno untouched). */
#include "sgcheck.h"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <unistd.h>

static const size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 100, 1000, 4095, 4096, 4097, 32768, 40000, 100000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void use(void *p, size_t alignment, size_t size) {
    CHECK(p != NULL);
    if (((uintptr_t)p & (alignment - 1)) != 0) {
        fprintf(stderr, "misaligned: %p for alignment %zu size %zu\n", p, alignment, size);
        exit(1);
    }
    CHECK(malloc_usable_size(p) >= size);
    memset(p, 0xA5, size);
}

int main(void) {
    require_slabguard();
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t alignment = 8; alignment <= (1u << 20); alignment <<= 1) {
        for (size_t i = 0; i < NSIZES; i++) {
            size_t size = sizes[i];
            void *a = NULL, *b, *c, *d;
            CHECK(posix_memalign(&a, alignment, size) == 0);
            use(a, alignment, size);
            b = aligned_alloc(alignment, size);
            use(b, alignment, size);
            c = memalign(alignment, size);
            use(c, alignment, size);
            d = malloc(size);   /* interleave plain allocations */
            use(d, size >= 16 ? 16 : 8, size);
            free(a); free(b); free(c); free(d);
        }
    }
    /* Keep many aligned blocks alive at once, in several classes. */
    void *held[600];
    for (int i = 0; i < 600; i++) {
        size_t alignment = (size_t)16 << (i % 9), size = (size_t)(i * 53 % 5000);
        held[i] = aligned_alloc(alignment, size);
        use(held[i], alignment, size);
    }
    for (int i = 0; i < 600; i++) free(held[i]);

    for (size_t i = 0; i < NSIZES; i++) {
        void *v = valloc(sizes[i]);
        use(v, page, sizes[i]);
        void *pv = pvalloc(sizes[i]);
        size_t rounded = sizes[i] == 0 ? page : (sizes[i] + page - 1) / page * page;
        /* glibc 2.36's pvalloc(0) is a 24-byte chunk, not the page its manual promises. */
        if (sizes[i] == 0 && getenv("SGCHECK_ON_LIBC") != NULL) rounded = 1;
        use(pv, page, rounded);
        free(v); free(pv);
    }

    /* posix_memalign: errors are returned, errno is left alone, *out untouched. */
    void *sentinel = (void *)0x1234, *p = sentinel;
    errno = 0;
    CHECK(posix_memalign(&p, 0, 16) == EINVAL && p == sentinel);
    CHECK(posix_memalign(&p, 4, 16) == EINVAL && p == sentinel);   /* < sizeof(void *) */
    CHECK(posix_memalign(&p, 24, 16) == EINVAL && p == sentinel);  /* not a power of two */
    CHECK(posix_memalign(&p, 64, opaque(SIZE_MAX - 100)) == ENOMEM && p == sentinel);
    CHECK(posix_memalign(&p, 64, opaque(SIZE_MAX / 2)) == ENOMEM && p == sentinel);
    CHECK(errno == 0);

    /* aligned_alloc / memalign as glibc 2.36: an alignment that is not a power of
     * two is rounded up to the next one (0 means none); above SIZE_MAX/2+1 it is
     * EINVAL; exactly 2^63 cannot be met (ENOMEM).  This program also runs on
     * glibc itself (PreloadTests), so these lines are glibc's behaviour. */
    void *q = aligned_alloc(opaque(24), 64);
    CHECK(q != NULL && (uintptr_t)q % 32 == 0);
    use(q, 32, 64);
    free(q);
    q = memalign(opaque(3), 64);
    CHECK(q != NULL && (uintptr_t)q % 4 == 0);
    use(q, 4, 64);
    free(q);
    q = memalign(opaque(100), 64);
    CHECK(q != NULL && (uintptr_t)q % 128 == 0);
    free(q);
    q = aligned_alloc(opaque(4097), 100);
    CHECK(q != NULL && (uintptr_t)q % 8192 == 0);
    use(q, 8192, 100);
    free(q);
    q = aligned_alloc(opaque(0), 48);
    CHECK(q != NULL);
    use(q, 1, 48);
    free(q);
    errno = 0;
    CHECK(aligned_alloc(opaque(SIZE_MAX / 2 + 2), 48) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(opaque(SIZE_MAX), 48) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(opaque(SIZE_MAX / 2 + 1), 48) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(64, opaque(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(4096, opaque(SIZE_MAX / 2)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(opaque(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(opaque(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
    /* Small alignments below sizeof(void *) are fine for aligned_alloc/memalign. */
    void *small = aligned_alloc(1, 10);
    use(small, 1, 10);
    free(small);
    small = memalign(2, 10);
    use(small, 2, 10);
    free(small);
    printf("ok aligned\n");
    return 0;
}
