/* mapping.h — resident-memory control for the read-only file mappings of the readers (GGUF,
 * safetensors): a streaming pass drops the pages of each finished piece so that resident memory
 * stays flat whatever the size of the model.
 *
 * Contract: advisory only. Dropping never changes what the mapping reads (a MAP_PRIVATE read-only
 * file mapping refaults from the file when touched again); failure only costs memory. */
#ifndef QKIT_FORMATS_MAPPING_H
#define QKIT_FORMATS_MAPPING_H

#include <stddef.h>

/* Drops the whole pages inside [p, p + n) of a read-only file mapping (partial pages at either
 * end stay: a neighbour may still need them). */
void mapping_drop(const void *p, size_t n);

#endif
