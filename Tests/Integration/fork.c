/* fork() while other threads allocate: the child must find a working heap
 * (no lock left held by a thread that does not exist in it), allocate from
 * several size classes and threads, and exit 0. */
#include "sgcheck.h"
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    uint64_t x = 88172645463325252ull + (uintptr_t)arg;
    void *keep[64] = {0};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int i = x % 64;
        free(keep[i]);
        keep[i] = malloc(x % 3 == 0 ? (x >> 8) % 100000 : (x >> 8) % 512);
        CHECK(keep[i] != NULL);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    for (int i = 0; i < 10000; i++) free(malloc((size_t)(i % 700)));
    return arg;
}

static int child_work(void) {
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = malloc((size_t)(i * 37 % 40000));
        if (!blocks[i]) return 2;
        memset(blocks[i], 0x5A, (size_t)(i * 37 % 40000));
    }
    for (int i = 0; i < 1000; i++) free(blocks[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) return 3;
    if (pthread_join(t, NULL) != 0) return 4;
    return 0;
}

int main(void) {
    require_slabguard();
    pthread_t t[3];
    for (intptr_t i = 0; i < 3; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 200; i++) free(malloc((size_t)(round * 100 + i)));
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(child_work());
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child %d failed: status 0x%x\n", round, status);
            return 1;
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("ok fork\n");
    return 0;
}
