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

void mapping_prefault(const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n == 0)
        return;
    uintptr_t a = (uintptr_t)p, lo = a & ~((uintptr_t)page - 1);
#ifdef MADV_POPULATE_READ
    if (madvise((void *)lo, a + n - lo, MADV_POPULATE_READ) == 0)
        return;
#endif
    (void)madvise((void *)lo, a + n - lo, MADV_WILLNEED); /* advisory */
}

bool mapping_prefault_fits(uint64_t total)
{
    long page = sysconf(_SC_PAGESIZE), pages = sysconf(_SC_PHYS_PAGES);
    return page > 0 && pages > 0 && total <= (uint64_t)pages * (uint64_t)page / 2;
}
