/*
 * preload.c — the malloc drop-in: exports the C library's allocation names
 * from libslabguard_rt.so, so that `LD_PRELOAD=libslabguard_rt.so prog` (or
 * linking with -lslabguard_rt) runs every allocation of the program, of libc
 * and of ld.so (once it has relocated itself) on slabguard.
 *
 * Each export is one tail call into a Swift `@_cdecl` entry point in
 * SlabguardCore/Entry/MallocEntry.swift, where the semantics live.  The Swift
 * names are our own (`sg_entry_*`): Swift 6.3 warns on `@_cdecl("malloc")`.
 * They are declared hidden here: the linker merges visibilities to the most
 * restrictive, so they stay local to the library, never clash with anything
 * in the program, and the calls are direct (no PLT).
 *
 * Exports (default visibility; `nm -D --defined-only` lists them): malloc,
 * free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc, malloc_usable_size, and C23's free_sized and
 * free_aligned_sized.  glibc 2.36 declares neither of the last two, so no
 * program built here calls them; exporting them is harmless (they are not
 * libc's names on this system) and makes programs built against a newer C
 * library free through slabguard rather than through a libc that never
 * allocated the buffer.
 *
 * Also exported: dlclose, so that the flight recorder (log=PATH) can keep a library's
 * symbols before it is unmapped and note when it was (SlabguardCore/Entry/ModuleEntry.swift);
 * the real dlclose is found with dlsym(RTLD_NEXT) each time (dlclose is rare).  And
 * dlopen, so that the module map (and the log's copy of it) knows a library from the
 * moment it is loaded.  glibc's dlopen looks at its caller's return address: a name
 * without '/' is searched in the caller's DT_RUNPATH, '$ORIGIN' in the name is the
 * caller's directory, and the caller's namespace is used.  A wrapper that called it
 * would make all of those slabguard's; so for such a name, and for a caller outside
 * the base namespace, the wrapper is a tail call (the program's return address stays),
 * and the module map learns of the library at its next refresh instead.
 *
 * Also exported: sigaction and signal, so that a program installing its own
 * SIGSEGV/SIGBUS handler while slabguard's crash explainer is installed gets
 * chained behind it rather than silently replacing it (see sg_fault.c).
 *
 * Also exported: the C++ operator new/delete family (below), so that new and delete
 * run on slabguard as malloc does and debug modes can check that a buffer is released
 * through the deallocator that matches its allocator.
 *
 * Also exported: glibc's __libc_malloc family (below).  Not exported: mallopt,
 * mallinfo, malloc_trim, malloc_stats and malloc_info — calls to those reach
 * glibc's own (unused) heap and are harmless.
 *
 * Built with -fno-builtin (Package.swift): without it GCC may recognise
 * allocation idioms here and call back into the exported names (design §6).
 *
 * The Swift runtime: Package.swift links it statically into this library
 * (-static-stdlib, its symbols kept private), so a preloaded process loads no
 * libswiftCore.so, and a Swift program keeps its own runtime.  The shared
 * runtime, if the library is ever linked against it, installs its crash
 * backtracer's handlers for SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP
 * and SIGQUIT in every process that loads it: in a C program a `kill -ABRT`
 * then prints a Swift crash report and is ignored.  The constructor below
 * guards against that: it puts those signals back to their default action
 * when the handler lives in libswiftCore and the program itself is not a
 * Swift program (one that needs libswiftCore keeps its backtracer).
 *
 * Nothing in this file allocates, and the only state is the constructor's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sg_shim.h"

#define SG_ENTRY __attribute__((visibility("hidden")))
#define SG_EXPORT __attribute__((visibility("default")))

/* The Swift entry points (SlabguardCore/Entry/MallocEntry.swift). */
SG_ENTRY void *sg_entry_malloc(size_t size);
SG_ENTRY void sg_entry_free(void *p);
SG_ENTRY void *sg_entry_calloc(size_t count, size_t size);
SG_ENTRY void *sg_entry_realloc(void *p, size_t size);
SG_ENTRY void *sg_entry_reallocarray(void *p, size_t count, size_t size);
SG_ENTRY int sg_entry_posix_memalign(void **out, size_t alignment, size_t size);
SG_ENTRY void *sg_entry_aligned_alloc(size_t alignment, size_t size);
SG_ENTRY void *sg_entry_valloc(size_t size);
SG_ENTRY void *sg_entry_pvalloc(size_t size);
SG_ENTRY size_t sg_entry_malloc_usable_size(void *p);
SG_ENTRY void sg_entry_dlclose_before(uintptr_t address);
SG_ENTRY void sg_entry_dlclose_after(uintptr_t address);
SG_ENTRY void sg_entry_dlopen_after(void);

/* malloc and free are one jump each, straight to the Swift functions behind
 * sg_entry_malloc and sg_entry_free (MallocEntry.swift): a C function here keeps a frame
 * pointer (SwiftPM builds with -fno-omit-frame-pointer), and so does @_cdecl's thunk, so
 * going through both costs eight instructions on the hottest path for nothing.  Their
 * Swift calling convention is the C one for these signatures (one integer or pointer
 * argument in the first argument register, the pointer result in the return register;
 * no context, error or indirect result): the thunk itself is only a tail jump.  A
 * renamed or re-typed entry is a link error, not a wrong call (the mangled name changes). */
#if defined(__x86_64__)
#define SG_JUMP_EXPORT(name, target) \
    __asm__(".globl " #name "\n.type " #name ",@function\n.p2align 4\n" #name ":\n\tjmp " #target "\n.size " #name ",.-" #name "\n")
#elif defined(__aarch64__)
#define SG_JUMP_EXPORT(name, target) \
    __asm__(".globl " #name "\n.type " #name ",%function\n.p2align 4\n" #name ":\n\tb " #target "\n.size " #name ",.-" #name "\n")
#endif
#ifdef SG_JUMP_EXPORT
SG_JUMP_EXPORT(malloc, "$s13SlabguardCore15sg_entry_mallocySvSgSuF");
SG_JUMP_EXPORT(free, "$s13SlabguardCore13sg_entry_freeyySvSgF");
#else
SG_EXPORT void *malloc(size_t size) { return sg_entry_malloc(size); }
SG_EXPORT void free(void *p) { sg_entry_free(p); }
#endif
SG_EXPORT void *calloc(size_t count, size_t size) { return sg_entry_calloc(count, size); }
SG_EXPORT void *realloc(void *p, size_t size) { return sg_entry_realloc(p, size); }
SG_EXPORT void *reallocarray(void *p, size_t count, size_t size) { return sg_entry_reallocarray(p, count, size); }
SG_EXPORT int posix_memalign(void **out, size_t alignment, size_t size) {
    return sg_entry_posix_memalign(out, alignment, size);
}
SG_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return sg_entry_aligned_alloc(alignment, size); }
SG_EXPORT void *memalign(size_t alignment, size_t size) { return sg_entry_aligned_alloc(alignment, size); }
SG_EXPORT void *valloc(size_t size) { return sg_entry_valloc(size); }
SG_EXPORT void *pvalloc(size_t size) { return sg_entry_pvalloc(size); }
SG_EXPORT size_t malloc_usable_size(void *p) { return sg_entry_malloc_usable_size(p); }

/* glibc's own names for its allocator (__libc_malloc and the rest): a program or
 * library that calls them (to bypass a replaced malloc, or through an old ABI)
 * would mix glibc's heap with ours, and a buffer from one freed into the other
 * aborts; jemalloc, tcmalloc and Valgrind replace them too. */
SG_EXPORT void *__libc_malloc(size_t size);
SG_EXPORT void __libc_free(void *p);
SG_EXPORT void *__libc_calloc(size_t count, size_t size);
SG_EXPORT void *__libc_realloc(void *p, size_t size);
SG_EXPORT void *__libc_memalign(size_t alignment, size_t size);
SG_EXPORT void *__libc_valloc(size_t size);
SG_EXPORT void *__libc_pvalloc(size_t size);
SG_EXPORT void *__libc_malloc(size_t size) { return sg_entry_malloc(size); }
SG_EXPORT void __libc_free(void *p) { sg_entry_free(p); }
SG_EXPORT void *__libc_calloc(size_t count, size_t size) { return sg_entry_calloc(count, size); }
SG_EXPORT void *__libc_realloc(void *p, size_t size) { return sg_entry_realloc(p, size); }
SG_EXPORT void *__libc_memalign(size_t alignment, size_t size) { return sg_entry_aligned_alloc(alignment, size); }
SG_EXPORT void *__libc_valloc(size_t size) { return sg_entry_valloc(size); }
SG_EXPORT void *__libc_pvalloc(size_t size) { return sg_entry_pvalloc(size); }

/* C23 (not declared by glibc 2.36, so declared here).  The size and alignment
 * are hints that fast mode does not need. */
SG_EXPORT void free_sized(void *p, size_t size);
SG_EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size);
SG_EXPORT void free_sized(void *p, size_t size) { (void)size; sg_entry_free(p); }
SG_EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size) {
    (void)alignment;
    (void)size;
    sg_entry_free(p);
}

/* The C++ global operator new/delete family: every form libstdc++ exports
 * (`nm -D --defined-only libstdc++.so.6 | grep -E '_Zn[wa]|_Zd[la]'`): plain, nothrow,
 * sized delete (C++14), aligned (std::align_val_t, C++17), aligned nothrow, aligned
 * sized — 8 news and 12 deletes.  Defined unversioned: a versioned reference
 * (_Znwm@GLIBCXX_3.4) binds to an unversioned definition, so the preloaded ones win.
 * Each passes its form as a kind (SlabguardCore/Debug/Checks/AllocationKinds.swift):
 * debug modes record it in the buffer's tag and check it at release
 * (`alloc-dealloc mismatch`); fast mode forwards to malloc's and free's fast paths.
 * The deletes are one tail call each; a new is one call and a null check.
 *
 * operator new's failure: C cannot throw std::bad_alloc without linking the C++ runtime.
 * The choice: on failure, call the C++ runtime's own operator of the same name (the next
 * definition after this library, dlsym(RTLD_NEXT, …)).  It allocates through malloc or
 * aligned_alloc — slabguard's — and so fails the same way, then does exactly what the
 * standard asks: calls the new_handler in a loop, throws std::bad_alloc when there is
 * none (its nothrow forms return NULL).  When its handler makes room and it succeeds,
 * the buffer is marked with its form (sg_entry_cxx_mark).  The exception unwinds through
 * this file's frames (the C compiler gives them unwind tables).  Without a C++ runtime
 * after slabguard (a program that links libslabguard_rt.so before libstdc++), the
 * throwing forms say so and abort; the nothrow forms return NULL. */
#define SG_KIND_NEW 1u
#define SG_KIND_NEW_ARRAY 2u
#define SG_KIND_ALIGNED_NEW 3u
#define SG_KIND_ALIGNED_NEW_ARRAY 4u

SG_ENTRY void *sg_entry_cxx_new(size_t size, unsigned kind);
SG_ENTRY void *sg_entry_cxx_new_aligned(size_t size, size_t alignment, unsigned kind);
SG_ENTRY void sg_entry_cxx_delete(void *p, size_t alignment, unsigned kind);
SG_ENTRY void sg_entry_cxx_delete_sized(void *p, size_t size, size_t alignment, unsigned kind);
SG_ENTRY void sg_entry_cxx_mark(void *p, unsigned kind);

/* The failure path of every operator new (see above).  `aligned`: whether the operator
 * takes an alignment; `nothrow_tag`: the std::nothrow_t reference of a nothrow form, or NULL. */
__attribute__((noinline, cold))
static void *sg_new_failed(const char *name, size_t size, int aligned, size_t alignment, const void *nothrow_tag,
                           unsigned kind) {
    void *real = dlsym(RTLD_NEXT, name);
    if (real == NULL) {
        if (nothrow_tag != NULL) return NULL;
        static const char message[] = "slabguard: operator new: out of memory, and no C++ runtime after slabguard "
                                      "to throw std::bad_alloc\n";
        (void)!write(2, message, sizeof message - 1);
        abort();
    }
    void *p;
    if (!aligned && nothrow_tag == NULL) p = ((void *(*)(size_t))real)(size);
    else if (!aligned) p = ((void *(*)(size_t, const void *))real)(size, nothrow_tag);
    else if (nothrow_tag == NULL) p = ((void *(*)(size_t, size_t))real)(size, alignment);
    else p = ((void *(*)(size_t, size_t, const void *))real)(size, alignment, nothrow_tag);
    if (p != NULL) sg_entry_cxx_mark(p, kind);
    return p;
}

#define SG_NEW(name, kind)                                                              \
    SG_EXPORT void *name(size_t size);                                                  \
    SG_EXPORT void *name(size_t size) {                                                 \
        void *p = sg_entry_cxx_new(size, kind);                                         \
        if (__builtin_expect(p != NULL, 1)) return p;                                   \
        return sg_new_failed(#name, size, 0, 0, NULL, kind);                            \
    }
#define SG_NEW_NOTHROW(name, kind)                                                      \
    SG_EXPORT void *name(size_t size, const void *tag);                                 \
    SG_EXPORT void *name(size_t size, const void *tag) {                                \
        void *p = sg_entry_cxx_new(size, kind);                                         \
        if (__builtin_expect(p != NULL, 1)) return p;                                   \
        return sg_new_failed(#name, size, 0, 0, tag, kind);                             \
    }
#define SG_NEW_ALIGNED(name, kind)                                                      \
    SG_EXPORT void *name(size_t size, size_t alignment);                                \
    SG_EXPORT void *name(size_t size, size_t alignment) {                               \
        void *p = sg_entry_cxx_new_aligned(size, alignment, kind);                      \
        if (__builtin_expect(p != NULL, 1)) return p;                                   \
        return sg_new_failed(#name, size, 1, alignment, NULL, kind);                    \
    }
#define SG_NEW_ALIGNED_NOTHROW(name, kind)                                              \
    SG_EXPORT void *name(size_t size, size_t alignment, const void *tag);               \
    SG_EXPORT void *name(size_t size, size_t alignment, const void *tag) {              \
        void *p = sg_entry_cxx_new_aligned(size, alignment, kind);                      \
        if (__builtin_expect(p != NULL, 1)) return p;                                   \
        return sg_new_failed(#name, size, 1, alignment, tag, kind);                     \
    }

SG_NEW(_Znwm, SG_KIND_NEW)                                                  /* new(size_t) */
SG_NEW(_Znam, SG_KIND_NEW_ARRAY)                                            /* new[](size_t) */
SG_NEW_NOTHROW(_ZnwmRKSt9nothrow_t, SG_KIND_NEW)                            /* new(size_t, nothrow_t const&) */
SG_NEW_NOTHROW(_ZnamRKSt9nothrow_t, SG_KIND_NEW_ARRAY)
SG_NEW_ALIGNED(_ZnwmSt11align_val_t, SG_KIND_ALIGNED_NEW)                   /* new(size_t, align_val_t) */
SG_NEW_ALIGNED(_ZnamSt11align_val_t, SG_KIND_ALIGNED_NEW_ARRAY)
SG_NEW_ALIGNED_NOTHROW(_ZnwmSt11align_val_tRKSt9nothrow_t, SG_KIND_ALIGNED_NEW)
SG_NEW_ALIGNED_NOTHROW(_ZnamSt11align_val_tRKSt9nothrow_t, SG_KIND_ALIGNED_NEW_ARRAY)

/* delete(void*), delete(void*, nothrow_t const&), delete(void*, align_val_t), delete(void*,
 * align_val_t, nothrow_t const&), and the sized delete(void*, size_t[, align_val_t]). */
SG_EXPORT void _ZdlPv(void *p);
SG_EXPORT void _ZdaPv(void *p);
SG_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *tag);
SG_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *tag);
SG_EXPORT void _ZdlPvm(void *p, size_t size);
SG_EXPORT void _ZdaPvm(void *p, size_t size);
SG_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t alignment);
SG_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t alignment);
SG_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag);
SG_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag);
SG_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t alignment);
SG_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t alignment);

SG_EXPORT void _ZdlPv(void *p) { sg_entry_cxx_delete(p, 0, SG_KIND_NEW); }
SG_EXPORT void _ZdaPv(void *p) { sg_entry_cxx_delete(p, 0, SG_KIND_NEW_ARRAY); }
SG_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *tag) { (void)tag; sg_entry_cxx_delete(p, 0, SG_KIND_NEW); }
SG_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *tag) { (void)tag; sg_entry_cxx_delete(p, 0, SG_KIND_NEW_ARRAY); }
SG_EXPORT void _ZdlPvm(void *p, size_t size) { sg_entry_cxx_delete_sized(p, size, 0, SG_KIND_NEW); }
SG_EXPORT void _ZdaPvm(void *p, size_t size) { sg_entry_cxx_delete_sized(p, size, 0, SG_KIND_NEW_ARRAY); }
SG_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t alignment) {
    sg_entry_cxx_delete(p, alignment, SG_KIND_ALIGNED_NEW);
}
SG_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t alignment) {
    sg_entry_cxx_delete(p, alignment, SG_KIND_ALIGNED_NEW_ARRAY);
}
SG_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag) {
    (void)tag;
    sg_entry_cxx_delete(p, alignment, SG_KIND_ALIGNED_NEW);
}
SG_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag) {
    (void)tag;
    sg_entry_cxx_delete(p, alignment, SG_KIND_ALIGNED_NEW_ARRAY);
}
SG_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t alignment) {
    sg_entry_cxx_delete_sized(p, size, alignment, SG_KIND_ALIGNED_NEW);
}
SG_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t alignment) {
    sg_entry_cxx_delete_sized(p, size, alignment, SG_KIND_ALIGNED_NEW_ARRAY);
}

/* sigaction(2) and signal(2): while slabguard's crash handler is installed
 * (debug mode), a program's handler for SIGSEGV/SIGBUS is recorded and chained
 * behind ours (CSlabguardShim/sg_fault.c) instead of replacing it.  Everything
 * else goes to the C library. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);
extern sighandler_t bsd_signal(int sig, sighandler_t handler);

SG_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sg_fault_owns(sig)) return sg_fault_program_action(sig, act, old);
    return __sigaction(sig, act, old);
}

SG_EXPORT sighandler_t signal(int sig, sighandler_t handler) {
    if (!sg_fault_owns(sig)) return bsd_signal(sig, handler);
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;   /* BSD semantics, as glibc's signal() */
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    if (sg_fault_program_action(sig, &act, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void *)old.sa_sigaction : old.sa_handler;
}

/* True when the main program lists the Swift runtime among its DT_NEEDED libraries. */
static int sg_program_needs_swift(void) {
    struct link_map *map = NULL;
    void *self = dlopen(NULL, RTLD_NOW | RTLD_NOLOAD);
    if (self == NULL) return 0;
    int found = 0;
    if (dlinfo(self, RTLD_DI_LINKMAP, &map) == 0 && map != NULL && map->l_ld != NULL) {
        const char *strings = NULL;
        for (const ElfW(Dyn) *d = map->l_ld; d->d_tag != DT_NULL; d++) {
            if (d->d_tag == DT_STRTAB) strings = (const char *)d->d_un.d_ptr;
        }
        for (const ElfW(Dyn) *d = map->l_ld; strings != NULL && d->d_tag != DT_NULL; d++) {
            if (d->d_tag == DT_NEEDED && strstr(strings + d->d_un.d_val, "libswiftCore") != NULL) found = 1;
        }
    }
    dlclose(self);
    return found;
}

__attribute__((constructor)) static void sg_restore_crash_signals(void) {
    static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP, SIGQUIT};
    if (sg_program_needs_swift()) return;
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++) {
        struct sigaction current;
        if (sigaction(crash_signals[i], NULL, &current) != 0) continue;
        void *handler = (current.sa_flags & SA_SIGINFO) ? (void *)current.sa_sigaction : (void *)current.sa_handler;
        if (handler == (void *)SIG_DFL || handler == (void *)SIG_IGN) continue;
        Dl_info info;
        if (dladdr(handler, &info) == 0 || info.dli_fname == NULL) continue;
        if (strstr(info.dli_fname, "libswiftCore") == NULL) continue;
        struct sigaction restore;
        memset(&restore, 0, sizeof restore);
        restore.sa_handler = SIG_DFL;
        sigemptyset(&restore.sa_mask);
        sigaction(crash_signals[i], &restore, NULL);
    }
}

/* Whether dlopen's result depends on who calls it (see the header comment). */
static int sg_dlopen_depends_on_caller(const char *file, void *caller) {
    if (file != NULL && (strchr(file, '/') == NULL || strchr(file, '$') != NULL)) return 1;
    Dl_info info;
    struct link_map *map = NULL;
    Lmid_t namespace_id = LM_ID_BASE;
    if (dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) != 0 && map != NULL
        && dlinfo(map, RTLD_DI_LMID, &namespace_id) == 0 && namespace_id != LM_ID_BASE) return 1;
    return 0;
}

SG_EXPORT void *dlopen(const char *file, int mode) {
    void *(*real)(const char *, int) = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    if (real == NULL) return NULL;
    if (sg_dlopen_depends_on_caller(file, __builtin_return_address(0))) {
        __attribute__((musttail)) return real(file, mode);
    }
    void *handle = real(file, mode);
    if (handle != NULL) sg_entry_dlopen_after();
    return handle;
}

SG_EXPORT int dlclose(void *handle) {
    int (*real)(void *) = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    if (real == NULL) return -1;
    struct link_map *map = NULL;
    uintptr_t inside = 0;
    void *h = handle;
    __asm__("" : "+r"(h));   /* glibc declares the handle nonnull; a program may still pass NULL */
    if (h != NULL && dlinfo(h, RTLD_DI_LINKMAP, &map) == 0 && map != NULL) inside = (uintptr_t)map->l_ld;
    if (inside != 0) sg_entry_dlclose_before(inside);
    int result = real(handle);
    if (inside != 0) sg_entry_dlclose_after(inside);
    return result;
}
