/* The tag API of slabguard.h (design §9), one scenario per argument:
 *   basic    two tags: allocations, a zeroed one, a check with buffers outstanding and a
 *            clean one, statistics, destroy with buffers outstanding, then plain free()
 *   after    a tag used after sg_tag_destroy
 *   wrong    a buffer freed to a tag it was not allocated from
 *   threads  two threads allocating and freeing on one tag while main checks it; at one
 *            point both hold four buffers while main checks: exactly 8 then */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "slabguard.h"

static void *kept[4];
static sg_tag_t *shared;
static int started;

__attribute__((noinline)) static void *net_buffer(sg_tag_t *tag, size_t n) { return sg_tag_alloc(tag, n); }

static int holding, checked;

static void *worker(void *arg) {
    (void)arg;
    for (int round = 0; round < 20000; round++) {
        void *p[4];
        for (int i = 0; i < 4; i++) p[i] = sg_tag_alloc(shared, 64);
        if (round == 0) __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
        if (round == 10000) {   /* hold four while main checks: exactly 8 outstanding then */
            __atomic_add_fetch(&holding, 1, __ATOMIC_SEQ_CST);
            while (!__atomic_load_n(&checked, __ATOMIC_SEQ_CST)) sched_yield();
        }
        for (int i = 0; i < 4; i++) sg_tag_free(shared, p[i], 64);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0) {
        sg_tag_t *net = sg_tag_create("net"), *disk = sg_tag_create("disk");
        for (int i = 0; i < 4; i++) kept[i] = net_buffer(net, 100);
        unsigned char *d = sg_tag_zalloc(disk, 5000);
        for (int i = 0; i < 5000; i++) if (d[i] != 0) { puts("not zeroed"); return 1; }
        sg_tag_free(disk, d, 5000);
        printf("check net %zu\n", sg_tag_check(net));
        printf("check disk %zu\n", sg_tag_check(disk));
        fflush(stdout);
        sg_stats_print(1);
        printf("destroy net %zu\n", sg_tag_destroy(net));
        printf("destroy disk %zu\n", sg_tag_destroy(disk));
        for (int i = 0; i < 4; i++) free(kept[i]);
        return 0;
    }
    if (strcmp(mode, "after") == 0) {
        sg_tag_t *net = sg_tag_create("net");
        sg_tag_destroy(net);
        void *p = sg_tag_alloc(net, 10);
        printf("survived %d\n", p == NULL);
        return 0;
    }
    if (strcmp(mode, "wrong") == 0) {
        sg_tag_t *net = sg_tag_create("net"), *disk = sg_tag_create("disk");
        void *p = sg_tag_alloc(net, 10);
        sg_tag_free(disk, p, 10);
        puts("survived");
        return 0;
    }
    if (strcmp(mode, "threads") == 0) {
        shared = sg_tag_create("shared");
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
        size_t most = 0;
        while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2) sched_yield();
        for (int k = 0; k < 40; k++) {
            size_t n = sg_tag_check(shared);
            if (n > most) most = n;
        }
        while (__atomic_load_n(&holding, __ATOMIC_SEQ_CST) < 2) sched_yield();
        size_t held = sg_tag_check(shared);
        __atomic_store_n(&checked, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        size_t final = sg_tag_check(shared);
        printf("most %zu final %zu destroy %zu held %zu\n", most, final, sg_tag_destroy(shared), held);
        return 0;
    }
    return 2;
}
