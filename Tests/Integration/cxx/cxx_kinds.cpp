// cxx_kinds.cpp — C++ allocation forms under the drop-in, one case per argument:
// mismatched pairs (each reported as `alloc-dealloc mismatch` in debug mode), correct
// pairs (never reported), a sized delete with the wrong size, delete past new[]'s array
// cookie, and operator new's failure (std::bad_alloc, the new_handler, nothrow's NULL).
// Built with g++ -O0 (CxxMismatchTests.swift): at -O1 and above GCC may elide a new
// and delete pair.  Prints "ok CASE" when the case ran to its end.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

struct Widget {                       // a destructor: new[] puts an 8-byte count before the objects
    int v[4];
    ~Widget() { sink += v[0]; }
    static volatile int sink;
};
volatile int Widget::sink;
struct alignas(64) Wide { char bytes[64]; };   // over-aligned: new goes to operator new(size_t, align_val_t)

// The allocating and freeing sites, with C names the reports' stacks can be checked by.
extern "C" {
__attribute__((noinline)) int *alloc_with_malloc(void) { return static_cast<int *>(std::malloc(4 * sizeof(int))); }
__attribute__((noinline)) int *alloc_with_new(void) { return new int(7); }
__attribute__((noinline)) int *alloc_with_new_array(void) { return new int[10](); }
__attribute__((noinline)) Widget *alloc_widgets(void) { return new Widget[3](); }
__attribute__((noinline)) Wide *alloc_with_aligned_new(void) { return new Wide(); }
__attribute__((noinline)) Wide *alloc_with_aligned_new_array(void) { return new Wide[2](); }
__attribute__((noinline)) void free_with_delete(int *p) { delete p; }
__attribute__((noinline)) void free_with_delete_array(int *p) { delete[] p; }
__attribute__((noinline)) void free_with_free(void *p) { std::free(p); }
__attribute__((noinline)) void free_widget(Widget *w) { delete w; }
__attribute__((noinline)) void free_with_plain_delete(void *p) { ::operator delete(p); }
__attribute__((noinline)) void free_with_aligned_delete(void *p) { ::operator delete(p, std::align_val_t(64)); }
}

static int handler_calls;
static void handler(void) {
    handler_calls++;
    std::set_new_handler(nullptr);   // the next failure throws
}

static int run(const char *name) {
    // Mismatches.
    if (!strcmp(name, "malloc-delete")) free_with_delete(alloc_with_malloc());
    else if (!strcmp(name, "new-free")) free_with_free(alloc_with_new());
    else if (!strcmp(name, "newarray-delete")) free_with_delete(alloc_with_new_array());
    else if (!strcmp(name, "new-deletearray")) free_with_delete_array(alloc_with_new());
    else if (!strcmp(name, "alignednew-delete")) free_with_plain_delete(alloc_with_aligned_new());
    else if (!strcmp(name, "new-aligneddelete")) free_with_aligned_delete(alloc_with_new());
    else if (!strcmp(name, "cookie")) free_widget(alloc_widgets());
    else if (!strcmp(name, "sized-wrong")) {
        void *p = ::operator new(40);
        ::operator delete(p, static_cast<size_t>(24));
    }
    // Correct pairs.
    else if (!strcmp(name, "correct")) {
        int *a = new int(1);
        delete a;                                       // sized delete, the right size
        int *b = new int[10]();
        delete[] b;
        Widget *w = new Widget[5]();
        delete[] w;                                     // sized delete[] past the cookie
        Widget *one = new Widget();
        delete one;
        Wide *x = new Wide();
        delete x;                                       // aligned sized delete
        Wide *xs = new Wide[3]();
        delete[] xs;
        void *raw = ::operator new(100);
        ::operator delete(raw);
        void *sized = ::operator new(100);
        ::operator delete(sized, static_cast<size_t>(100));
        int *n = new (std::nothrow) int(3);
        delete n;
        int *na = new (std::nothrow) int[7];
        delete[] na;
        void *an = ::operator new(256, std::align_val_t(128), std::nothrow);
        ::operator delete(an, std::align_val_t(128), std::nothrow);
        void *ana = ::operator new[](256, std::align_val_t(32), std::nothrow);
        ::operator delete[](ana, std::align_val_t(32));
        void *big = ::operator new(1 << 20);           // a large span
        ::operator delete(big, static_cast<size_t>(1 << 20));
        void *bigarray = ::operator new[](100000, std::align_val_t(4096));
        ::operator delete[](bigarray, static_cast<size_t>(100000), std::align_val_t(4096));
        void *m = std::malloc(24);
        m = std::realloc(m, 48);
        std::free(m);
        void *nothing = nullptr;
        ::operator delete(nothing);
        delete static_cast<int *>(nullptr);
    }
    // operator new's failure: as libstdc++ does.
    else if (!strcmp(name, "bad-alloc")) {
        volatile size_t huge = static_cast<size_t>(-1) / 2;
        bool caught = false;
        try {
            char *p = new char[huge];
            p[0] = 1;
        } catch (const std::bad_alloc &) {
            caught = true;
        }
        if (!caught) { std::printf("no bad_alloc for new[]\n"); return 1; }
        caught = false;
        try {
            void *p = ::operator new(huge, std::align_val_t(64));
            std::printf("aligned new returned %p\n", p);
        } catch (const std::bad_alloc &) {
            caught = true;
        }
        if (!caught) { std::printf("no bad_alloc for aligned new\n"); return 1; }
        if (new (std::nothrow) char[huge] != nullptr) { std::printf("nothrow new[] did not return NULL\n"); return 1; }
        if (::operator new(huge, std::align_val_t(16), std::nothrow) != nullptr) { std::printf("aligned nothrow\n"); return 1; }
        std::set_new_handler(handler);
        caught = false;
        try {
            void *p = ::operator new(huge);
            std::printf("new returned %p\n", p);
        } catch (const std::bad_alloc &) {
            caught = true;
        }
        if (!caught || handler_calls != 1) { std::printf("handler called %d times, caught %d\n", handler_calls, caught); return 1; }
    } else {
        std::printf("unknown case %s\n", name);
        return 2;
    }
    std::printf("ok %s\n", name);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int status = run(argv[i]);
        if (status != 0) return status;
    }
    return 0;
}
