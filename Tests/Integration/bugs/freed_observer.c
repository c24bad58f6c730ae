/* A call through an observer freed before it was unregistered: the crash names the freed
 * buffer (the register or stack word still pointing at it) with its allocation and free
 * stacks, and ends with the summary line. */
#include <stdio.h>
#include <stdlib.h>
struct observer { void (*notify)(int); int id; };
static void hello(int x) { printf("hello %d\n", x); }
static struct observer *registered;
__attribute__((noinline)) static void fire(void) { registered->notify(registered->id); }
int main(void) {
    struct observer *o = malloc(sizeof *o);
    o->notify = hello; o->id = 7;
    registered = o;
    fire();
    free(o);          /* unregistered too late */
    fire();           /* a call through the freed observer */
    return 0;
}
