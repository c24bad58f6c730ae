/*
 * slabguard.h — C API of the slabguard debugging slab allocator.
 *
 * Link with -lslabguard_rt (or LD_PRELOAD the library to run any program's
 * malloc on slabguard).  Modelled on Solaris kmem: object caches with
 * constructors, and a size-class allocator whose free takes the size.
 *
 * Errors: functions that return a pointer return NULL with errno = ENOMEM when
 * out of memory (or when a size computation would overflow).
 */
#ifndef SLABGUARD_H
#define SLABGUARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_cache sg_cache_t;

/* Constructor: called when a buffer leaves the slab layer; return 0 on success,
 * non-zero to fail the allocation.  Destructor: called when it returns there. */
typedef int (*sg_constructor_t)(void *buffer, void *arg);
typedef void (*sg_destructor_t)(void *buffer, void *arg);

/* Creates a cache of `size`-byte buffers aligned to `align` (0 or a power of two
 * up to 4096).  NULL with errno EINVAL for bad arguments, ENOMEM when out of memory. */
sg_cache_t *sg_cache_create(const char *name, size_t size, size_t align,
                            sg_constructor_t constructor, sg_destructor_t destructor, void *arg);
void *sg_cache_alloc(sg_cache_t *cache);
void sg_cache_free(sg_cache_t *cache, void *buffer);
/* Releases empty slabs back to the page arena. */
void sg_cache_reap(sg_cache_t *cache);
/* Destroys the cache; returns the number of buffers never freed (0 when clean).
 * Outstanding buffers are reported, and their memory is not reused. */
size_t sg_cache_destroy(sg_cache_t *cache);

/* Size-class allocator (kmem_alloc): free and realloc take the allocation size. */
void *sg_alloc(size_t size);
void *sg_zalloc(size_t size);
void sg_free(void *buffer, size_t size);
void *sg_realloc(void *buffer, size_t old_size, size_t new_size);

/* Debug layer (SLABGUARD_DEBUG): verifies every debug buffer now (::umem_verify) and
 * returns the number of problems reported; reports unreachable unfreed buffers now and
 * returns how many.  Both return 0 in fast mode. */
size_t sg_verify(void);
size_t sg_find_leaks(void);

/* Tags: accounting per subsystem.  Every buffer allocated from a tag is charged to it
 * (buffers and bytes in use, peak, allocations, frees: sg_stats_print lists each tag).
 * sg_tag_free takes the size, checked as in sg_free, and in debug mode the tag (a buffer
 * freed to another tag is reported).  sg_tag_check reports "tag check: N buffers, M bytes
 * outstanding in tag NAME" (in debug mode with each buffer's allocation stack) and
 * returns N (0: clean).  sg_tag_destroy checks, then retires the tag (its own memory is
 * given back even with buffers outstanding); any later use of it is reported as
 * "invalid tag: tag NAME used after destroy".  Thread-safe.  sg_tag_create returns NULL
 * with errno ENOMEM when 256 tags (with the libraries' own) are live or there is no memory.  The handle is not a
 * pointer: never dereference it. */
typedef struct sg_tag sg_tag_t;
sg_tag_t *sg_tag_create(const char *name);
void *sg_tag_alloc(sg_tag_t *tag, size_t size);
void *sg_tag_zalloc(sg_tag_t *tag, size_t size);
void sg_tag_free(sg_tag_t *tag, void *buffer, size_t size);
size_t sg_tag_check(sg_tag_t *tag);
size_t sg_tag_destroy(sg_tag_t *tag);

/* Prints ::kmastat-style statistics of every cache and tag to a file descriptor. */
void sg_stats_print(int fd);

#ifdef __cplusplus
}
#endif
#endif
