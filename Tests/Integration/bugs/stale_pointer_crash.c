// Bug corpus: a linked list whose second node was freed; following its next
// pointer reads 0xdeadbeefdeadbeef (the free pattern) and crashes.
// Expected: "slabguard: fatal signal" with a note that a register holds
// 0xdeadbeef... (a pointer read from freed memory), count_nodes in the stack.
#include <stdio.h>
#include <stdlib.h>

struct node { struct node *next; long value; };

__attribute__((noinline)) static long count_nodes(const struct node *n) {
    long total = 0;
    for (; n != NULL; n = n->next) total += n->value;
    return total;
}

int main(void) {
    struct node *first = malloc(sizeof *first), *second = malloc(sizeof *second);
    first->next = second; first->value = 1;
    second->next = NULL; second->value = 2;
    free(second);   /* BUG: still linked from first */
    printf("%ld\n", count_nodes(first));
    puts("not reached");
    return 0;
}
