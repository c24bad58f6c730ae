/*
 * sg_fault.c — the signal-handler entry of slabguard's crash explanations.
 *
 * The handler itself is C because it must run on whatever state the crash left
 * behind; the explaining is Swift (Debug/Faults/FaultExplainer.swift), called through
 * one function pointer.  After it: the program's own handler for the signal if
 * it installed one (chained), else the default action — our handler removes
 * itself and returns, the faulting instruction runs again and the process dies
 * of the signal as it would have without us (a signal sent with kill(2) is
 * raised again instead).
 *
 * The program's handler: the one in place when we installed ours, replaced by
 * whatever the program later sets through sigaction(2)/signal(2) — the drop-in
 * exports those two names and sends SIGSEGV/SIGBUS requests here while we are
 * installed (sg_fault_program_action), so a program that installs its own crash
 * handler keeps it and still gets our explanation first.  sg_fault_uninstall
 * (at exit) puts the program's handlers back in place.
 *
 * Nothing here allocates.
 */
#define _GNU_SOURCE
#include "sg_shim.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>

/* glibc's own name for sigaction: never interposed, so it reaches the kernel. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

static sg_fault_explainer sg_explain;
static struct sigaction sg_program_actions[3];   /* SIGSEGV, SIGBUS, SIGTRAP (watch) */
static volatile int sg_installed;
static volatile int sg_slot_installed[3];   /* per signal: SA_RESETHAND gives one back */

static int sg_slot(int sig) { return sig == SIGSEGV ? 0 : sig == SIGBUS ? 1 : sig == SIGTRAP ? 2 : -1; }

/* Calls the program's handler as the kernel would have: with its sa_mask (and the
 * signal itself, unless SA_NODEFER) blocked, and with SA_RESETHAND honoured — the
 * disposition is the default again before it runs, so a one-shot crash handler that
 * returns lets the fault kill the process instead of looping through us forever. */
static void sg_call_program_handler(int sig, siginfo_t *info, void *uc, struct sigaction next) {
    if (next.sa_flags & SA_RESETHAND) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sg_program_actions[sg_slot(sig)] = dfl;
        sg_slot_installed[sg_slot(sig)] = 0;   /* the program's next sigaction goes to the kernel */
        __sigaction(sig, &dfl, NULL);   /* ours is gone for this signal, as theirs would be */
    }
    sigset_t during, before;
    during = next.sa_mask;
    if (next.sa_flags & SA_NODEFER) {
        pthread_sigmask(SIG_BLOCK, &during, &before);
        sigset_t self;
        sigemptyset(&self);
        sigaddset(&self, sig);
        pthread_sigmask(SIG_UNBLOCK, &self, NULL);
    } else {
        sigaddset(&during, sig);
        pthread_sigmask(SIG_BLOCK, &during, &before);
    }
    if (next.sa_flags & SA_SIGINFO) next.sa_sigaction(sig, info, uc);
    else next.sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

static void sg_fault_entry(int sig, siginfo_t *info, void *uc) {
    int saved_errno = errno;
    int slot = sg_slot(sig);
    int explained = sg_explain != NULL ? sg_explain(sig, info, uc) : 0;
    if (sig == SIGTRAP && explained == 2) {   /* one of our watchpoints: handled, resume */
        errno = saved_errno;
        return;
    }
    struct sigaction next = sg_program_actions[slot];
    int has_handler = (next.sa_flags & SA_SIGINFO) ? next.sa_sigaction != NULL
                                                   : next.sa_handler != SIG_DFL && next.sa_handler != SIG_IGN;
    if (has_handler) {
        sg_call_program_handler(sig, info, uc, next);
        errno = saved_errno;
        return;
    }
    /* Default action (a synchronous fault cannot be ignored either). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    __sigaction(sig, &dfl, NULL);
    /* Sent, not a fault: delivered when we return.  A trap does not repeat its
     * instruction either (int3, a debugger's breakpoint): raised again too. */
    if (info->si_code <= 0 || sig == SIGTRAP) raise(sig);
    errno = saved_errno;
}

/* Points `sig` at sg_fault_entry, keeping the program's action in *program. */
static int sg_fault_take(int sig, struct sigaction *program) {
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = sg_fault_entry;
    act.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&act.sa_mask);
    return __sigaction(sig, &act, program);
}

int sg_fault_install(sg_fault_explainer explain) {
    if (sg_installed) return 0;
    sg_explain = explain;
    if (sg_fault_take(SIGSEGV, &sg_program_actions[0]) != 0) return -1;
    if (sg_fault_take(SIGBUS, &sg_program_actions[1]) != 0) {
        __sigaction(SIGSEGV, &sg_program_actions[0], NULL);
        return -1;
    }
    sg_slot_installed[0] = sg_slot_installed[1] = 1;
    sg_installed = 1;
    return 0;
}

/* SIGTRAP through the same entry (watch): our traps are handled, any other goes to the
 * program's handler or the default action, as without us. */
int sg_fault_install_trap(void) {
    if (!sg_installed || sg_slot_installed[2]) return sg_installed ? 0 : -1;
    if (sg_fault_take(SIGTRAP, &sg_program_actions[2]) != 0) return -1;
    sg_slot_installed[2] = 1;
    return 0;
}

void sg_fault_uninstall(void) {
    if (!sg_installed) return;
    sg_installed = 0;
    if (sg_slot_installed[0]) __sigaction(SIGSEGV, &sg_program_actions[0], NULL);
    if (sg_slot_installed[1]) __sigaction(SIGBUS, &sg_program_actions[1], NULL);
    if (sg_slot_installed[2]) __sigaction(SIGTRAP, &sg_program_actions[2], NULL);
    sg_slot_installed[0] = sg_slot_installed[1] = sg_slot_installed[2] = 0;
}

int sg_fault_owns(int sig) {
    int slot = sg_slot(sig);
    return sg_installed && slot >= 0 && sg_slot_installed[slot];
}

int sg_fault_program_has_handler(int sig) {
    int slot = sg_slot(sig);
    if (slot < 0) return 0;
    const struct sigaction *a = &sg_program_actions[slot];
    if (a->sa_flags & SA_SIGINFO) return a->sa_sigaction != NULL;
    return a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN;
}

int sg_fault_program_action(int sig, const struct sigaction *act, struct sigaction *old) {
    int slot = sg_slot(sig);
    if (slot < 0) { errno = EINVAL; return -1; }
    struct sigaction previous = sg_program_actions[slot];
    if (act != NULL) sg_program_actions[slot] = *act;
    if (old != NULL) *old = previous;
    return 0;
}

void sg_fault_registers(void *ucontext, uintptr_t *pc, uintptr_t *sp, uintptr_t *fp, int *is_write) {
#if defined(__x86_64__)
    const ucontext_t *uc = ucontext;
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    *fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    *is_write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;   /* page-fault error code: W bit */
#else
    (void)ucontext;
    *pc = *sp = *fp = 0;
    *is_write = 0;
#endif
}

uintptr_t sg_fault_register(void *ucontext, int i, const char **name) {
#if defined(__x86_64__)
    static const int regs[16] = {REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, REG_RBP, REG_RSP,
                                 REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
    static const char *const names[16] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
    if (i < 0 || i >= 16) { *name = NULL; return 0; }
    *name = names[i];
    return (uintptr_t)((const ucontext_t *)ucontext)->uc_mcontext.gregs[regs[i]];
#else
    (void)ucontext; (void)i;
    *name = NULL;
    return 0;
#endif
}

void *sg_fault_address(void *info) { return ((siginfo_t *)info)->si_addr; }
int sg_fault_code(void *info) { return ((siginfo_t *)info)->si_code; }
