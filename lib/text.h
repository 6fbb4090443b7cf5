/* text.h: sizes and shapes in words, for messages. One implementation for
 * the library's own messages (pm_spec_error) and the front ends' (the tool
 * and the shim compile lib/text.c into their core too: these names are
 * hidden in the shared library). Each writes into buf (n bytes) and
 * returns it; thread-safe. */
#ifndef PM_TEXT_H
#define PM_TEXT_H

#include <stddef.h>

/* Approximate byte counts, three digits: "812 bytes", "812 KiB", "1.50 GiB". */
const char *pm__fmt_bytes(char *buf, size_t n, double bytes);
/* Exact sizes, in the largest unit that divides them: "256 MiB", "4 KiB",
 * "4097 bytes"; PM_BUDGET_UNLIMITED is "unlimited". */
const char *pm__fmt_size(char *buf, size_t n, size_t bytes);
/* Sizes joined by 'x': "16x16". */
const char *pm__fmt_dims(char *buf, size_t n, const size_t *v, int count);
/* The message for a dtype "u8" or "i8" (pm_dtype_parse's -PM_EAMBIGUOUS)
 * given to `key` ("dtype", "raw_dtype") as `quoted` ("'u8'"): one wording
 * for every key that takes a dtype. */
const char *pm__fmt_ambiguous_dtype(char *buf, size_t n, const char *key, const char *quoted);

#endif
