/* The malloc drop-in: exports the C library's allocation names (issue 4). */
#include "slabguard.h"
