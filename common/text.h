/* text.h: sizes and shapes in words, for the front ends' messages and
 * reports. Each writes into buf (n bytes) and returns it. */
#ifndef PM_COMMON_TEXT_H
#define PM_COMMON_TEXT_H

#include <stddef.h>

/* "68.5 GB (63.8 GiB)"-style byte counts: "812 KiB", "1.50 GiB". */
const char *fmt_bytes(char *buf, size_t n, double bytes);
/* Exact sizes: "256 MiB", "4 KiB", "4097 bytes", "unlimited". */
const char *fmt_size(char *buf, size_t n, size_t bytes);
/* "16x16" */
const char *fmt_dims(char *buf, size_t n, const size_t *v, int count);

#endif
