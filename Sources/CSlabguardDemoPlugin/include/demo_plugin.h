/* The demo plugin's functions (demo_plugin.c); `slabguard demo` finds them with dlsym. */
#ifndef SLABGUARD_DEMO_PLUGIN_H
#define SLABGUARD_DEMO_PLUGIN_H
void demo_plugin_start(void);
void demo_plugin_stop(void);
void demo_plugin_tick(void);
void demo_plugin_register(void (**hook)(void));
#endif
