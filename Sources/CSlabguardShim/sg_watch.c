/*
 * sg_watch.c — the CPU's watchpoints on the process's own memory (`watch`, and the
 * replays of `slabguard hunt`), without ptrace or a debugger: perf_event_open(2)
 * hardware breakpoints with `sigtrap`.  A write to a watched range raises SIGTRAP
 * (si_code TRAP_PERF) synchronously in the thread that wrote, at the instruction after
 * the store; `sig_data` comes back in the siginfo as si_perf_data, and says which
 * watch and which address (the kernel copies it when a watch is moved).
 *
 * The events are opened once, at start-up while the process has one thread, for this
 * thread with `inherit` + `inherit_thread`: every thread created later carries them,
 * a forked child does not (sg_watch_forget closes its copies), an exec removes them
 * (`remove_on_exec`, and the descriptors are close-on-exec).  Moving a watch is one
 * ioctl (PERF_EVENT_IOC_MODIFY_ATTRIBUTES) on the opening thread's event, which the
 * kernel applies to every inherited copy: a system call, so callers move watches at a
 * bounded rate.  An idle watch points at a word of its own here, which nothing writes.
 *
 * The descriptors are moved above SG_WATCH_FD_FLOOR, out of the way of a program's own
 * low numbers; `watch` is the one option that keeps descriptors open (DESIGN.md).
 *
 * Nothing here allocates.
 */
#define _GNU_SOURCE
#include "sg_shim.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SG_WATCH_FD_FLOOR 900

static int sg_watch_fds[SG_WATCH_SLOTS];               /* descriptor + 1; 0: none */
static _Alignas(8) uint64_t sg_watch_park[SG_WATCH_SLOTS];   /* where an idle watch points */

static void sg_watch_attr(struct perf_event_attr *a, uintptr_t address, int length, int slot) {
    memset(a, 0, sizeof *a);
    a->type = PERF_TYPE_BREAKPOINT;
    a->size = sizeof *a;
    a->bp_type = HW_BREAKPOINT_W;
    a->bp_addr = address;
    a->bp_len = length == 1 ? HW_BREAKPOINT_LEN_1 : length == 2 ? HW_BREAKPOINT_LEN_2
              : length == 4 ? HW_BREAKPOINT_LEN_4 : HW_BREAKPOINT_LEN_8;
    a->sample_period = 1;
    a->exclude_kernel = 1;
    a->exclude_hv = 1;
    a->inherit = 1;
    a->inherit_thread = 1;
    a->remove_on_exec = 1;
    a->sigtrap = 1;
    a->sig_data = SG_WATCH_DATA(address, slot);
}

int sg_watch_open(int *error) {
    int opened = 0;
    for (int i = 0; i < SG_WATCH_SLOTS; i++) {
        struct perf_event_attr a;
        sg_watch_attr(&a, (uintptr_t)&sg_watch_park[i], 8, i);
        long fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            if (opened == 0) *error = errno;
            break;   /* fewer registers (a debugger holds some): use the ones we have */
        }
        int high = fcntl((int)fd, F_DUPFD_CLOEXEC, SG_WATCH_FD_FLOOR);
        if (high >= 0) {
            syscall(SYS_close, fd);
            fd = high;
        }
        sg_watch_fds[i] = (int)fd + 1;
        opened++;
    }
    return opened;
}

int sg_watch_set(int slot, uintptr_t address, int length) {
    if (slot < 0 || slot >= SG_WATCH_SLOTS || sg_watch_fds[slot] == 0) return -1;
    struct perf_event_attr a;
    if (address == 0) sg_watch_attr(&a, (uintptr_t)&sg_watch_park[slot], 8, slot);
    else sg_watch_attr(&a, address, length, slot);
    return ioctl(sg_watch_fds[slot] - 1, PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &a) == 0 ? 0 : -1;
}

void sg_watch_forget(void) {
    for (int i = 0; i < SG_WATCH_SLOTS; i++) {
        if (sg_watch_fds[i] != 0) syscall(SYS_close, sg_watch_fds[i] - 1);
        sg_watch_fds[i] = 0;
    }
}

/* The perf data of a SIGTRAP, or 0 when it is not a perf event's (si_code TRAP_PERF). */
uint64_t sg_trap_perf_data(void *info) {
    const siginfo_t *si = info;
    if (si->si_code != 6 /* TRAP_PERF */) return 0;
    /* si_perf_data: the first word of the union after si_addr (asm-generic/siginfo.h). */
    return *(const uint64_t *)((const char *)&si->si_addr + 8);
}
