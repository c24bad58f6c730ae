/* Under an address-space limit (as `ulimit -v` sets), fill memory with 1 MiB buffers
 * until malloc fails, free everything, and fill again, three times: what was freed must
 * be allocatable again.  Prints the MiB each round got.  argv[1]: the limit in MiB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX 100000
static void *held[MAX];

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct rlimit limit = {(rlim_t)strtoul(argv[1], NULL, 10) << 20, (rlim_t)strtoul(argv[1], NULL, 10) << 20};
    if (setrlimit(RLIMIT_AS, &limit) != 0) { perror("setrlimit"); return 2; }
    for (int round = 0; round < 3; round++) {
        int n = 0;
        while (n < MAX && (held[n] = malloc(1 << 20)) != NULL) { memset(held[n], 1, 64); n++; }
        printf("round %d: %d MiB\n", round, n);
        for (int i = 0; i < n; i++) free(held[i]);
    }
    return 0;
}
