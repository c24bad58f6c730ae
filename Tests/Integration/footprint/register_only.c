/* A thread that blocks every signal holds the only pointer to a malloc'd buffer in
 * r12 while it sleeps in a raw nanosleep; main exits meanwhile.  The buffer is
 * reachable: no leak may be reported.  Prints "ok register_only", exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile int asleep;

/* Overwrites the dead frames below (malloc's own frames held the pointer). */
__attribute__((noinline)) static void wipe_stack(void) {
    volatile char area[64 << 10];
    for (size_t i = 0; i < sizeof area; i++) area[i] = 0;
}

static void *holder(void *unused) {
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *volatile slot = malloc(777);
    memset(slot, 1, 777);
    wipe_stack();
    struct timespec t = {5, 0};
    asleep = 1;
#if defined(__x86_64__)
    __asm__ volatile(
        "movq (%[slot]), %%r12\n\t"
        "movq $0, (%[slot])\n\t"
        "xorl %%edx, %%edx\n\t"
        "xorl %%r8d, %%r8d\n\t"
        "xorl %%r9d, %%r9d\n\t"
        "xorl %%r10d, %%r10d\n\t"
        "movl $35, %%eax\n\t"          /* nanosleep */
        "movq %[time], %%rdi\n\t"
        "xorl %%esi, %%esi\n\t"
        "syscall\n\t"
        "movq %%r12, (%[slot])\n\t"
        :
        : [slot] "r"(&slot), [time] "r"(&t)
        : "rax", "rdx", "rdi", "rsi", "r8", "r9", "r10", "rcx", "r11", "r12", "memory");
#endif
    free(slot);
    return NULL;
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, NULL, holder, NULL);
    while (!asleep) {}
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL);
    printf("ok register_only\n");
    return 0;
}
