/* A pointer overwritten with text ("????????", as in the seed's mdb session) and followed:
 * the crash report shows the register's value as the text it is. */
#include <stdint.h>
#include <string.h>

struct node { struct node *next; };

int main(void) {
    struct node holder;
    memcpy(&holder.next, "????????", 8);
    volatile struct node *n = holder.next;
    return n->next != 0;
}
