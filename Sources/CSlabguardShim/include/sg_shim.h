/*
 * sg_shim.h — the thin C layer under slabguard's Swift core.
 *
 * Swift has no thread-local variables, so the per-thread magazine slots live
 * here as `__thread` data with the initial-exec TLS model (one %fs-relative
 * access, no __tls_get_addr call, no allocation).  Everything is zero at
 * thread start: a zeroed slot has count == capacity == 0, so the first
 * allocation and the first free of every cache miss and take the Swift slow
 * path, which sets the thread up.  That is why the fast path has no
 * "initialized yet?" branch.
 *
 * The heap's global state also lives in static storage here (zeroed .bss):
 * Swift globals with initializers go through swift_once and exclusivity
 * checks, which the allocator's hot path must not pay for or recurse into.
 *
 * Nothing here allocates.  The logic is in Swift.
 */
#ifndef SG_SHIM_H
#define SG_SHIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Caches with a per-thread magazine slot; caches beyond this run without magazines. */
#define SG_MAX_CACHES 256

/* One cache's magazines on one thread.  `rounds`/`count`/`capacity` mirror the
 * loaded magazine so the fast path touches only this slot. */
typedef struct sg_magazine_slot {
    /* The fast paths' fields, first: one cache line per slot (64 bytes; the TLS array is
     * 64-byte aligned — Swift does not import an over-aligned struct, so the padding). */
    void **rounds;          /* rounds array of the loaded magazine */
    int32_t count;          /* rounds in the loaded magazine */
    int32_t capacity;       /* capacity of the loaded magazine (0: none loaded) */
    uint64_t allocations;   /* fast-path allocation count on this thread */
    uint64_t frees;         /* fast-path free count on this thread */
    void *loaded;           /* Magazine header of the loaded magazine */
    void *previous;         /* Magazine header of the previous magazine */
    uint64_t padding[2];
} sg_magazine_slot;
_Static_assert(sizeof(sg_magazine_slot) == 64, "one cache line per magazine slot");

/* Thread states for sg_thread_state(). */
#define SG_THREAD_NEW 0
#define SG_THREAD_LIVE 1
#define SG_THREAD_DEAD 2

extern __thread sg_magazine_slot sg_tls_slots[SG_MAX_CACHES] __attribute__((tls_model("initial-exec"), aligned(64)));
extern __thread uint32_t sg_tls_thread_state __attribute__((tls_model("initial-exec")));
extern __thread void *sg_tls_thread_record __attribute__((tls_model("initial-exec")));
extern __thread uint32_t sg_tls_reentry __attribute__((tls_model("initial-exec")));
extern __thread uint32_t sg_tls_debug_depth __attribute__((tls_model("initial-exec")));
extern __thread uint32_t sg_tls_thread_id __attribute__((tls_model("initial-exec")));
/* The thread's slot of library-tag counters (Debug/Tags/TagTable.swift): 0 none yet, else slot + 1. */
extern __thread uint32_t sg_tls_tag_slot __attribute__((tls_model("initial-exec")));
extern __thread int64_t sg_tls_sample_countdown __attribute__((tls_model("initial-exec")));
/* The thread's quarantine batch (Debug/Checks/Quarantine.swift): freed chunks waiting to join
 * the shared FIFO, SG_QUARANTINE_BATCH at a time, under one lock acquisition. */
#define SG_QUARANTINE_BATCH 32
extern __thread void *sg_tls_quarantine[2 * SG_QUARANTINE_BATCH] __attribute__((tls_model("initial-exec")));   /* chunk, cache */
extern __thread uint32_t sg_tls_quarantine_count __attribute__((tls_model("initial-exec")));

static inline __attribute__((always_inline)) sg_magazine_slot *sg_thread_slots(void) { return sg_tls_slots; }
static inline __attribute__((always_inline)) uint32_t sg_thread_state(void) { return sg_tls_thread_state; }
static inline __attribute__((always_inline)) void sg_set_thread_state(uint32_t s) { sg_tls_thread_state = s; }
static inline __attribute__((always_inline)) void *sg_thread_record(void) { return sg_tls_thread_record; }
static inline __attribute__((always_inline)) void sg_set_thread_record(void *r) { sg_tls_thread_record = r; }
/* Per-thread re-entry depth of the allocator (used to detect recursion during set-up and reports). */
static inline __attribute__((always_inline)) uint32_t sg_reentry(void) { return sg_tls_reentry; }
static inline __attribute__((always_inline)) void sg_set_reentry(uint32_t v) { sg_tls_reentry = v; }
/* Non-zero while this thread is inside a debug cache's checked allocation or free, where
 * it changes its magazine, quarantine batch and stack scratch without a lock
 * (Debug/DebugAllocator.swift).  Finding it set on entry is a signal handler's call, or a
 * siglongjmp out of one: sg_report_debug_reentry says so and aborts. */
static inline __attribute__((always_inline)) uint32_t sg_debug_depth(void) { return sg_tls_debug_depth; }
static inline __attribute__((always_inline)) void sg_set_debug_depth(uint32_t v) { sg_tls_debug_depth = v; }
__attribute__((noreturn)) void sg_report_debug_reentry(void);

/* The kernel thread id, cached (0 until first asked for). */
static inline __attribute__((always_inline)) uint32_t sg_thread_id(void) { return sg_tls_thread_id; }
static inline __attribute__((always_inline)) void sg_set_thread_id(uint32_t t) { sg_tls_thread_id = t; }
static inline __attribute__((always_inline)) uint32_t sg_tag_slot(void) { return sg_tls_tag_slot; }
static inline __attribute__((always_inline)) void sg_set_tag_slot(uint32_t s) { sg_tls_tag_slot = s; }

/* sample=N: allocations this thread serves before the next guarded one.  Zero at
 * thread start, so the first small malloc of every thread reaches the slow path,
 * which sets it (to a huge value outside sample mode). */
static inline __attribute__((always_inline)) int64_t sg_sample_countdown(void) { return sg_tls_sample_countdown; }
static inline __attribute__((always_inline)) void sg_set_sample_countdown(int64_t v) { sg_tls_sample_countdown = v; }
static inline __attribute__((always_inline)) uint32_t sg_quarantine_count(void) { return sg_tls_quarantine_count; }
static inline __attribute__((always_inline)) void sg_set_quarantine_count(uint32_t n) { sg_tls_quarantine_count = n; }
/* The thread's block of transaction-log slots (TransactionLog.swift): next to write, and
 * the end of the block; claimed SG_LOG_BLOCK at a time with one shared atomic add. */
#define SG_LOG_BLOCK 64
/* Where the debug layer captures a stack before interning it in the stack depot. */
#define SG_STACK_SCRATCH_FRAMES 64
extern __thread uintptr_t sg_tls_stack_scratch[SG_STACK_SCRATCH_FRAMES] __attribute__((tls_model("initial-exec")));
static inline __attribute__((always_inline)) uintptr_t *sg_stack_scratch(void) { return sg_tls_stack_scratch; }
/* The thread's pending changes to the stack depot's per-stack counters (Debug/Audit/
 * StackDepot.swift): added here, moved to the shared counters with atomic adds every
 * 64 changes of a stack, when another stack takes the entry, and at the thread's exit. */
#define SG_SITE_DELTAS 16
typedef struct sg_site_delta {
    uint32_t stack;           /* the stack id (0: entry unused) */
    uint32_t changes;         /* changes held since the last move */
    int64_t live_bytes, live_buffers, allocations, allocated_bytes;
} sg_site_delta;
extern __thread sg_site_delta sg_tls_site_deltas[SG_SITE_DELTAS] __attribute__((tls_model("initial-exec")));
static inline __attribute__((always_inline)) sg_site_delta *sg_site_deltas(void) { return sg_tls_site_deltas; }
extern __thread uint64_t sg_tls_log_next __attribute__((tls_model("initial-exec")));
extern __thread uint64_t sg_tls_log_end __attribute__((tls_model("initial-exec")));
static inline __attribute__((always_inline)) uint64_t *sg_log_next(void) { return &sg_tls_log_next; }
static inline __attribute__((always_inline)) uint64_t *sg_log_end(void) { return &sg_tls_log_end; }
static inline __attribute__((always_inline)) void *sg_quarantine_chunk(uint32_t i) { return sg_tls_quarantine[2 * i]; }
static inline __attribute__((always_inline)) void *sg_quarantine_cache(uint32_t i) { return sg_tls_quarantine[2 * i + 1]; }
static inline __attribute__((always_inline)) void sg_set_quarantine_entry(uint32_t i, void *chunk, void *cache) {
    sg_tls_quarantine[2 * i] = chunk;
    sg_tls_quarantine[2 * i + 1] = cache;
}

/* Fills `words` 4-byte words at p (4-aligned) with `value`: glibc's vectorized wmemset. */
static inline void sg_fill_words32(void *p, uint32_t value, size_t words) {
    wmemset((wchar_t *)p, (wchar_t)value, words);
}

/* Every allocator lock is taken with sg_mutex_lock: a lock the calling thread
 * already holds (a signal handler re-entered the allocator, or siglongjmp'd out
 * of it) is reported — "malloc re-entered from a signal handler" — and the
 * process aborts, instead of hanging forever.  Locks taken with these are released
 * with sg_mutex_unlock (the thread's list of held locks stays right).
 * sg_mutex_lock_unless_held
 * returns 0 without locking in that case (the report path, which must go on). */
void sg_mutex_lock(pthread_mutex_t *m);
int sg_mutex_lock_unless_held(pthread_mutex_t *m);
int sg_mutex_trylock(pthread_mutex_t *m);       /* 1: taken */
void sg_mutex_unlock(pthread_mutex_t *m);
/* Re-initializes a mutex in a forked child (its holder is gone). */
void sg_mutex_reinit(pthread_mutex_t *m);
void sg_held_locks_reset(void);
/* Whether a seccomp filter is in force, or /proc/self/status cannot be read (shim.c). */
int sg_system_calls_filtered(void);
/* A pointer of glibc's own heap handed to glibc's free (shim.c): 1, or 0 when it is not one. */
int sg_free_foreign(void *p);
/* The calling thread's held-lock bookkeeping, for tests: how many it holds or is
 * taking, and whether it holds m. */
uint32_t sg_held_lock_count(void);
int sg_holds_lock(pthread_mutex_t *m);
/* The fork gate (sg_locks.c): closed by the fork handler while it gathers every
 * allocator lock, so threads taking their first lock wait instead of starving it;
 * opened once it holds them all; reset in the child. */
void sg_fork_gate_close(void);
void sg_fork_gate_open(void);
void sg_fork_gate_reset(void);

/* glibc's program_invocation_short_name (the process's name for reports). */
const char *sg_program_name(void);
/* Secure execution (AT_SECURE: setuid/setgid, file capabilities). */
int sg_secure_execution(void);
int sg_memory_file(const char *name, int floor);
int sg_move_descriptor(int fd, int target);

/* Random bytes from the kernel (getrandom(2)); returns how many, or -1. */
static inline long sg_random_bytes(void *buffer, size_t count) { return syscall(SYS_getrandom, buffer, count, 0); }

/* The time-stamp counter (audit times: a few ns, no system call). */
static inline __attribute__((always_inline)) uint64_t sg_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
/* Whether the TSC ticks at a constant rate in every power state and on every CPU (CPUID
 * 0x80000007 EDX bit 8, "invariant TSC"); without it audit times use clock_gettime. */
static inline int sg_tsc_is_invariant(void) {
    uint32_t a, b, c, d;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u), "c"(0));
    if (a < 0x80000007u) return 0;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000007u), "c"(0));
    return (d >> 8) & 1;
}

/* The kernel thread id, read from glibc's thread descriptor where its place was
 * verified at load (shim.c): no system call, so a sandboxed program (seccomp) that
 * forbids gettid is never killed by its allocator; else asked of the kernel. */
extern int sg_tid_offset;
static inline uint32_t sg_gettid(void) {
    int offset = sg_tid_offset;
    if (offset != 0) return (uint32_t)*(volatile int *)((char *)pthread_self() + offset);
    return (uint32_t)syscall(SYS_gettid);
}

/* The static memory map of the Swift core: every layer's process-wide state, one
 * region each, in zeroed .bss (DESIGN.md's "Static memory map"; TrustTests checks the
 * two agree).  Why not Swift globals: they are initialized lazily through swift_once,
 * which must not run inside malloc.  Each region is raw bytes here; the Swift type
 * that lives in it is named in the comment, and `StateRegion.bound(to:)` checks that
 * it fits (a size known when the Swift code is compiled: the check folds away). */
typedef struct sg_state_layout {
    _Alignas(4096) unsigned char lifecycle[4096];      /* HeapLifecycle */
    _Alignas(64) unsigned char arena[4096];            /* PageArena */
    _Alignas(64) unsigned char cache_registry[2048];   /* CacheRegistry */
    _Alignas(64) unsigned char slab_records[2048];     /* SlabRecords.State */
    _Alignas(64) unsigned char thread_registry[2048];  /* ThreadRegistry */
    _Alignas(64) unsigned char magazine_pool[2048];    /* MagazinePool.State */
    _Alignas(64) unsigned char default_heap[4096];     /* SizeClassHeap (malloc, sg_alloc) */
    /* The debug layer: one region per part, in DESIGN.md's order of its parts. */
    _Alignas(64) unsigned char debug_options[13312];   /* OptionsState (Debug/Options) */
    _Alignas(64) unsigned char debug_capture[1024];    /* CaptureState (Debug/Capture): clock, fork time, unloads */
    _Alignas(64) unsigned char debug_recorder[128];    /* FlightRecorder.State */
    _Alignas(64) unsigned char debug_audit[64];        /* StackDepotState (Debug/Audit) */
    _Alignas(64) unsigned char debug_tags[64];         /* the tag table's mapping (Debug/Tags) */
    _Alignas(64) unsigned char debug_reports[8192];    /* ReportState (Debug/Reports) */
    _Alignas(64) unsigned char debug_checks[128];      /* ChecksState (Debug/Checks): quarantine FIFO */
    _Alignas(64) unsigned char debug_faults[512];      /* GuardState (Debug/Faults): retired spans, watchpoints */
    _Alignas(64) unsigned char debug_leaks[64];        /* LeakFinder.StaleProbe (Debug/Leaks) */
    _Alignas(64) unsigned char debug_control[64];      /* DebugState (Debug/, the top) */
    _Alignas(64) unsigned char report_scratch[64];     /* ReportBuilder.Scratch */
    _Alignas(64) unsigned char fill_pages[64];         /* BufferTag's fill-pattern pages */
    _Alignas(64) unsigned char transaction_log[4096];  /* TransactionLog.State */
    _Alignas(64) unsigned char mappings[64];           /* MetadataMappings.Table */
    _Alignas(64) unsigned char mapping_ranges[16320];  /* MetadataMappings' (start, end) pairs */
    _Alignas(64) unsigned char stack_layer[4096];      /* StackLayerState */
} sg_state_layout;

_Static_assert(sizeof(sg_state_layout) == 69632 /* 17 pages */, "the static memory map changed: update DESIGN.md");
_Static_assert(sizeof(((sg_state_layout *)0)->mapping_ranges) % 16 == 0, "mapping ranges are (start, end) pairs");

/* Each region's offset and size, for Swift (StateRegion). */
#define SG_REGION(name) SG_REGION_OFFSET_##name = __builtin_offsetof(sg_state_layout, name), \
                        SG_REGION_BYTES_##name = sizeof(((sg_state_layout *)0)->name)
enum {
    SG_REGION(lifecycle), SG_REGION(arena), SG_REGION(cache_registry), SG_REGION(slab_records),
    SG_REGION(thread_registry), SG_REGION(magazine_pool), SG_REGION(default_heap),
    SG_REGION(debug_options), SG_REGION(debug_capture), SG_REGION(debug_recorder), SG_REGION(debug_audit),
    SG_REGION(debug_tags), SG_REGION(debug_reports), SG_REGION(debug_checks), SG_REGION(debug_faults),
    SG_REGION(debug_leaks), SG_REGION(debug_control),
    SG_REGION(report_scratch), SG_REGION(fill_pages), SG_REGION(transaction_log), SG_REGION(mappings),
    SG_REGION(mapping_ranges), SG_REGION(stack_layer)
};
#undef SG_REGION

extern sg_state_layout sg_state;
static inline __attribute__((always_inline)) void *sg_state_base(void) { return &sg_state; }

/* The mode words, side by side in one aligned 8-byte word so that the malloc fast path
 * tests both with one load (`sg_mode_any() == 0`: fast mode, nothing sampled): the debug
 * flags (0: fast mode) and, in sample mode (sample=N without other debugging), which
 * sampling (the fast path then counts allocations down to the next guarded one). */
typedef union sg_mode_words {
    struct { uint32_t debug_flags; uint32_t sampling; } words;
    uint64_t any;
} sg_mode_words;
extern sg_mode_words sg_mode __attribute__((aligned(8)));
static inline __attribute__((always_inline)) uint64_t sg_mode_any(void) {
    return __atomic_load_n(&sg_mode.any, __ATOMIC_RELAXED);
}
static inline __attribute__((always_inline)) uint32_t sg_debug_flags(void) {
    return __atomic_load_n(&sg_mode.words.debug_flags, __ATOMIC_RELAXED);
}
static inline void sg_set_debug_flags(uint32_t f) { __atomic_store_n(&sg_mode.words.debug_flags, f, __ATOMIC_RELEASE); }
static inline __attribute__((always_inline)) uint32_t sg_sampling(void) {
    return __atomic_load_n(&sg_mode.words.sampling, __ATOMIC_RELAXED);
}
static inline void sg_set_sampling(uint32_t on) { __atomic_store_n(&sg_mode.words.sampling, on, __ATOMIC_RELEASE); }

/* The size class of a small request (size <= 32768), by a table of 4097 bytes indexed
 * in 8-byte steps (every class size is a multiple of 8): one load, no branch.  The table
 * is a constant (shim.c), so it is right before any constructor runs. */
#define SG_SMALL_MAX 32768
extern const uint8_t sg_size_class_table[SG_SMALL_MAX / 8 + 1];
static inline __attribute__((always_inline)) uint32_t sg_size_class(size_t size) {
    return sg_size_class_table[(size + 7) >> 3];
}

/* Atomics on plain words in raw memory (Swift's Atomic needs stable ~Copyable storage). */
static inline uint64_t sg_atomic_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void sg_atomic_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t sg_atomic_add_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int sg_atomic_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The caller's program counter, stack pointer and frame pointer, for the stack unwinder. */
static inline __attribute__((always_inline)) void sg_current_frame(uintptr_t *pc, uintptr_t *sp, uintptr_t *fp) {
#if defined(__x86_64__)
    uintptr_t rip, rsp, rbp;
    __asm__ volatile("leaq 0(%%rip), %0\n\tmovq %%rsp, %1\n\tmovq %%rbp, %2" : "=r"(rip), "=r"(rsp), "=r"(rbp));
    *pc = rip; *sp = rsp; *fp = rbp;
#else
    *pc = (uintptr_t)__builtin_return_address(0);
    *sp = (uintptr_t)__builtin_frame_address(0);
    *fp = (uintptr_t)__builtin_frame_address(0);
#endif
}

/* CPU watchpoints on the process's own memory (sg_watch.c): `watch` and hunt's replays.
 * A watch's sig_data (si_perf_data in its SIGTRAP): bit 63 set, the address shifted
 * left by 2 (user addresses fit in 47 bits), the slot in the low 2 bits. */
#define SG_WATCH_SLOTS 4
#define SG_WATCH_DATA(address, slot) ((1ull << 63) | ((uint64_t)(address) << 2) | (uint64_t)(slot))
int sg_watch_open(int *error);                              /* how many watches opened */
int sg_watch_set(int slot, uintptr_t address, int length);  /* address 0: idle; 0 or -1 */
void sg_watch_forget(void);                                 /* a forked child's copies */
uint64_t sg_trap_perf_data(void *info);                     /* 0: not a perf SIGTRAP */
int sg_fault_install_trap(void);                            /* SIGTRAP through the explainer too */

/* Crash explanations (sg_fault.c).  The handler for SIGSEGV and SIGBUS calls
 * `explain` (Swift) with the signal, its siginfo_t and ucontext_t; a return of
 * 0 means "not a heap error": the program's own handler for the signal, if it
 * installed one, runs next, else the default action (the process dies of the
 * signal).  While installed, the program's sigaction/signal calls for these
 * two signals (through the drop-in's exports) record its handler here instead
 * of replacing ours: see sg_fault_program_action. */
typedef int (*sg_fault_explainer)(int sig, void *info, void *ucontext);
int sg_fault_install(sg_fault_explainer explain);
void sg_fault_uninstall(void);
int sg_fault_owns(int sig);
int sg_fault_program_has_handler(int sig);
struct sigaction;
int sg_fault_program_action(int sig, const struct sigaction *act, struct sigaction *old);
/* Registers at the faulting instruction (x86_64; zero elsewhere). */
void sg_fault_registers(void *ucontext, uintptr_t *pc, uintptr_t *sp, uintptr_t *fp, int *is_write);
/* General-purpose register `i` (0..15, in the order rax rbx rcx rdx rsi rdi rbp rsp
 * r8..r15) and its name; 0 / NULL past the end. */
uintptr_t sg_fault_register(void *ucontext, int i, const char **name);
void *sg_fault_address(void *info);
int sg_fault_code(void *info);

/* Stopping the other threads for the leak scan (sg_world.c: ptrace through a helper
 * task, signals where ptrace cannot be used): returns how many threads were stopped or
 * parked, or -1 when one did not stop within `timeout_ms` (the world is then running
 * again; sg_world_unstopped_thread names it). */
int sg_world_stop(int timeout_ms);
void sg_world_resume(void);
int sg_world_unstopped_thread(void);
/* While the world is stopped: the lowest stack pointer, in [from, to), of a thread stopped
 * in the handler (0: none) — the scan reads that stack from there up. */
uintptr_t sg_world_stack_pointer_in(uintptr_t from, uintptr_t to);
/* While the world is stopped: the registers read from the stopped threads (ptrace; none
 * with the signal method, whose threads keep them on their stacks), a root of the scan. */
void sg_world_registers(const uintptr_t **words, size_t *count);
/* After sg_world_stop: how many threads were parked (asleep with the signal blocked, their
 * registers out of the scan's sight).  sg_world_pause_ms sleeps, between two scans. */
int sg_world_parked_count(void);
void sg_world_pause_ms(int ms);
/* The exit handler's entry (for on_exit: HANDLER is a void (*)(int)): its callers'
 * registers spilled, its stack pointer kept as the mark below which the exit thread's
 * stack holds only slabguard's frames; sg_exit_stack_mark is 0 outside it. */
void sg_marked_exit_handler(int status, void *handler);
uintptr_t sg_exit_stack_mark(void);
/* The state letter of the thread that did not stop: its /proc state ('R', 'S', ...), or
 * 'b' when it kept running with the signal blocked. */
int sg_world_unstopped_state(void);

#ifdef __cplusplus
}
#endif
#endif
