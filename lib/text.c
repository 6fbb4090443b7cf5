/* text.c: sizes and shapes in words, for the messages of the library and of
 * the front ends (see text.h). */
#include <stdbool.h>
#include <stdio.h>

#include "patchmap.h"
#include "text.h"

static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };

const char *pm__fmt_bytes(char *buf, size_t n, double bytes)
{
	int u = 0;

	while (bytes >= 1024 && u < 5)
		bytes /= 1024, u++;
	if (u == 0)
		snprintf(buf, n, "%.0f bytes", bytes);
	else
		snprintf(buf, n, bytes < 10 ? "%.2f %s" : bytes < 100 ? "%.1f %s" : "%.0f %s", bytes,
			 unit[u]);
	return buf;
}

const char *pm__fmt_size(char *buf, size_t n, size_t bytes)
{
	int u = 0;

	if (bytes == PM_BUDGET_UNLIMITED) {
		snprintf(buf, n, "unlimited");
		return buf;
	}
	while (u < 5 && bytes >= 1024 && bytes % 1024 == 0)
		bytes /= 1024, u++;
	snprintf(buf, n, "%zu %s", bytes, unit[u]);
	return buf;
}

const char *pm__fmt_ambiguous_dtype(char *buf, size_t n, const char *key, const char *quoted)
{
	const char *p = quoted;
	bool u;

	while (*p == '\'' || *p == ' ' || *p == '\t')
		p++;
	u = *p == 'u' || *p == 'U';
	snprintf(buf, n, "%s: %s is ambiguous: 8 bits (%s) or numpy's 8 bytes (%s)? write %s or %s",
		 key, quoted, u ? "uint8" : "int8", u ? "uint64" : "int64",
		 u ? "uint8 (u1)" : "int8 (i1)", u ? "uint64 (<u8)" : "int64 (<i8)");
	return buf;
}

const char *pm__fmt_dims(char *buf, size_t n, const size_t *v, int count)
{
	size_t k = 0;

	buf[0] = 0;
	for (int a = 0; a < count && k < n; a++)
		k += (size_t)snprintf(buf + k, n - k, a ? "x%zu" : "%zu", v[a]);
	return buf;
}
