/* A library that leaves nothing behind: loaded and unloaded to make slabguard scan. */
int footprint_lib_value(void) { return 42; }
