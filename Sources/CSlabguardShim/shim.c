/* Storage for sg_shim.h: thread-local magazine slots and the heap's static state. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/auxv.h>
#include <stdlib.h>
#include "sg_shim.h"

const char *sg_program_name(void) { return program_invocation_short_name; }

int sg_secure_execution(void) { return getauxval(AT_SECURE) != 0; }

__thread sg_magazine_slot sg_tls_slots[SG_MAX_CACHES] __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_thread_state __attribute__((tls_model("initial-exec")));
__thread void *sg_tls_thread_record __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_reentry __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_debug_depth __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_thread_id __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_tag_slot __attribute__((tls_model("initial-exec")));
__thread int64_t sg_tls_sample_countdown __attribute__((tls_model("initial-exec")));
__thread void *sg_tls_quarantine[2 * SG_QUARANTINE_BATCH] __attribute__((tls_model("initial-exec")));
__thread uint32_t sg_tls_quarantine_count __attribute__((tls_model("initial-exec")));
__thread uint64_t sg_tls_log_next __attribute__((tls_model("initial-exec")));
__thread uint64_t sg_tls_log_end __attribute__((tls_model("initial-exec")));
__thread uintptr_t sg_tls_stack_scratch[SG_STACK_SCRATCH_FRAMES] __attribute__((tls_model("initial-exec")));

sg_state_layout sg_state;
uint32_t sg_debug_flags_word;
uint32_t sg_sampling_word;
