// Bug corpus (guards, sample=N): a read through a pointer to a freed buffer.
// With guard pages the freed buffer's pages are inaccessible, so the read
// faults at once.  Expected: "slabguard: use-after-free: read at ADDR, offset
// 0x18 into buffer of 120 bytes", with peek_balance (the faulting function)
// and close_account (the free) in stacks.
#include <stdio.h>
#include <stdlib.h>

static void *volatile sink;

struct account { long id; long pad[2]; long balance; char name[88]; };

static struct account *volatile acct;

__attribute__((noinline)) static void close_account(void) {
    free(acct);
    sink = 0;   /* keeps this frame: no tail call into free */
}

__attribute__((noinline)) static long peek_balance(void) {
    return acct->balance;   /* BUG: acct was freed */
}

int main(void) {
    acct = malloc(sizeof *acct);
    acct->balance = 42;
    close_account();
    printf("%ld\n", peek_balance());
    puts("not reached");
    return 0;
}
