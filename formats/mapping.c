/* mapping.c — dropping resident pages of read-only file mappings (see mapping.h). */
#include "mapping.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void mapping_drop(const void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, lo = (a + page - 1) & ~(page - 1), hi = (a + n) & ~(page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advisory: failure only costs memory */
}
