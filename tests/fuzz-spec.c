/* fuzz-spec.c: libFuzzer target for the option grammar: any keys and values
 * against any small source. No crash or stray read; every refusal is one
 * line that starts with a key; every resolution pm_spec_matrix accepts is
 * one pm_matrix_describe accepts with the same shape.
 *
 * Input: byte 0 picks the source's ndim (1-4) and byte 1 its dtype; then one
 * byte per axis for its extent (1-32); the rest is "key=value" lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "patchmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One line, starting with "<a spec key>: ", "source: " or "'<key>': ". */
static void check_message(const char *msg)
{
	size_t n = strcspn(msg, ":");
	bool known = n == 6 && !strncmp(msg, "source", 6);

	if (!msg[0] || strchr(msg, '\n'))
		abort();
	if (msg[0] == '\'') { /* an unknown key, quoted: it may hold a ':' */
		if (!strstr(msg, "': not a key; the keys are window, "))
			abort();
		return;
	}
	if (msg[n] != ':' || msg[n + 1] != ' ')
		abort();
	for (int i = 0; !known && pm_spec_key(i); i++)
		known = strlen(pm_spec_key(i)) == n && !strncmp(msg, pm_spec_key(i), n);
	if (!known)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char pixels[1];
	struct pm_source src;
	struct pm_matrix_opts o, again;
	struct pm_matrix_info info = { 0 }, info2 = { 0 };
	size_t shape[4], pos;
	pm_spec *s = NULL;
	char *text;
	int ndim, dtype;

	if (size < 6)
		return 0;
	ndim = data[0] % 4 + 1;
	dtype = data[1] % (PM_DTYPE_COUNT - 1) + 1;
	for (int a = 0; a < ndim; a++)
		shape[a] = data[2 + a] % 32 + 1;
	pos = 2 + (size_t)ndim;
	if (pm_source_contiguous(&src, pixels, dtype, ndim, shape) || pm_spec_new(&s))
		abort();
	text = malloc(size - pos + 1);
	if (!text)
		abort();
	memcpy(text, data + pos, size - pos);
	text[size - pos] = 0;
	for (char *line = text, *next; line; line = next) {
		char *eq;
		int ret;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		ret = pm_spec_set(s, line, eq + 1);
		if (ret == 0 && pm_spec_error(s)[0])
			abort();
		if (ret != 0)
			check_message(pm_spec_error(s));
	}
	if (pm_spec_matrix(s, &src, &o, &info) == 0) {
		if (pm_spec_error(s)[0])
			abort();
		again = o;
		if (pm_matrix_describe(&again, &info2) || memcmp(&info, &info2, sizeof(info)))
			abort();
		if (pm_spec_check_memory(s, &info))
			check_message(pm_spec_error(s));
	} else {
		check_message(pm_spec_error(s));
	}
	pm_spec_free(s);
	free(text);
	return 0;
}
