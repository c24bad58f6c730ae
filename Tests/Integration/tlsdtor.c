/* Memory freed (and allocated) while threads exit: a __thread list of
 * objects released by a pthread key destructor, which also allocates and
 * re-arms itself once; an atexit handler that frees at process exit. */
#include "sgcheck.h"
#include <pthread.h>
#include <stdint.h>

typedef struct node { struct node *next; char payload[40]; } node;

static __thread node *tls_list;
static __thread void *tls_big;
static pthread_key_t key;
static int destructor_runs;
static void *global_keep;

static void release(void *value) {
    node *n = tls_list;
    while (n) { node *next = n->next; free(n); n = next; }
    tls_list = NULL;
    free(tls_big);
    tls_big = NULL;
    /* First call: allocate during teardown and re-arm; the second call frees it. */
    if ((uintptr_t)value == 1) {
        void *later = malloc(1000);
        memset(later, 1, 1000);
        pthread_setspecific(key, later);
    } else {
        free(value);
    }
    __atomic_add_fetch(&destructor_runs, 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg) {
    for (int i = 0; i < 500 + (int)(intptr_t)arg; i++) {
        node *n = malloc(sizeof *n);
        CHECK(n);
        n->next = tls_list;
        tls_list = n;
    }
    tls_big = malloc(100000);
    CHECK(tls_big);
    pthread_setspecific(key, (void *)1);
    return NULL;
}

static void at_exit(void) { free(global_keep); }

int main(void) {
    require_slabguard();
    CHECK(pthread_key_create(&key, release) == 0);
    global_keep = malloc(5000);
    atexit(at_exit);
    for (int wave = 0; wave < 25; wave++) {
        pthread_t t[4];
        for (intptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
        for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    }
    CHECK(destructor_runs == 25 * 4 * 2);
    printf("ok tlsdtor\n");
    return 0;
}
