/* many_mappings.c — 30,000 buffers kept reachable from globals until exit, under
 * `guards`: each guarded buffer is a span of its own, two or three kernel mappings, so
 * /proc/self/maps lists some 60,000 lines (3 MB).  The leak scan read it into 1 MiB and
 * lost every root past the cut — the program's globals among them — and reported all
 * 31,009 buffers as leaks.  None is: "ok many_mappings" and not one report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; char *text; };

static struct node *head;
static char **table;

int main(void) {
    for (int i = 0; i < 15000; i++) {
        struct node *x = malloc(sizeof *x);
        x->text = malloc(16 + i % 50);
        memset(x->text, 'a', 15);
        x->next = head;
        head = x;
    }
    table = malloc(sizeof(char *) * 1000);
    for (int i = 0; i < 1000; i++) {
        table[i] = malloc(100);
        table[i] = realloc(table[i], 200 + i);
    }
    printf("ok many_mappings\n");
    return 0;
}
