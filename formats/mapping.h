/* mapping.h — resident-memory control for the read-only file mappings of the readers (GGUF,
 * safetensors): a streaming pass drops the pages of each finished piece so that resident memory
 * stays flat whatever the size of the model.
 *
 * Contract: advisory only. Dropping never changes what the mapping reads (a MAP_PRIVATE read-only
 * file mapping refaults from the file when touched again); failure only costs memory. */
#ifndef QKIT_FORMATS_MAPPING_H
#define QKIT_FORMATS_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Drops the whole pages inside [p, p + n) of a read-only file mapping (partial pages at either
 * end stay: a neighbour may still need them). */
void mapping_drop(const void *p, size_t n);

/* Maps the pages of [p, p + n) now, in one call (MADV_POPULATE_READ, Linux 5.14+; older kernels
 * get MADV_WILLNEED's read-ahead), instead of one page fault per 4 KB page on first touch: what a
 * pass over every weight (the engine) saves. */
void mapping_prefault(const void *p, size_t n);

/* Whether prefaulting total bytes is worth it: at most half the machine's memory, so that a model
 * larger than memory is not read twice (once ahead, once again when its pages were evicted). */
bool mapping_prefault_fits(uint64_t total);

#endif
