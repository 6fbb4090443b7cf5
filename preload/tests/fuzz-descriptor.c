/* fuzz-descriptor.c: libFuzzer target for the descriptor parser and the
 * descriptor-to-matrix rules. Whatever the bytes, the parser must not read
 * outside them, must say why it refuses in one line naming a line that
 * exists, and what it accepts must be self-consistent; desc_matrix over a
 * few source shapes must either describe a matrix or say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const char *err)
{
	if (!memchr(err, 0, DESC_ERRLEN) || !err[0] || strchr(err, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t shapes[][3] = { { 40, 50, 0 }, { 20, 21, 3 }, { 100, 0, 0 } };
	char err[DESC_ERRLEN];
	struct desc d;
	int line, lines = 1;
	/* a private copy of exactly `size` bytes, so that ASan sees overreads */
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	for (size_t i = 0; i < size; i++)
		lines += buf[i] == '\n';
	if (desc_parse(buf, size, &d, err, &line)) {
		check_message(err);
		if (line < 0 || line > lines)
			abort();
		free(buf);
		return 0;
	}
	if (line != 0 || !d.source[0] || !d.line[DK_SOURCE] || !d.line[desc_key("window")])
		abort();
	for (int k = 0; k < DESC_MAX_KEYS; k++)
		if (d.line[k] < 0 || d.line[k] > lines)
			abort();
	for (int s = 0; s < 3; s++) {
		static const unsigned char byte;
		struct pm_matrix_info info = { 0 };
		struct pm_matrix_opts o;
		struct pm_source src;
		int ndim = shapes[s][1] ? shapes[s][2] ? 3 : 2 : 1;

		if (pm_source_contiguous(&src, &byte, PM_DTYPE_U8, ndim, shapes[s]))
			abort();
		if (desc_matrix(&d, &src, &o, &info, err, &line)) {
			check_message(err);
			if (line < 0 || line > lines)
				abort();
			continue;
		}
		if (!info.rows || !info.cols || info.nspatial < 1 || info.nspatial > ndim ||
		    info.bytes / info.rows < info.cols * info.elem_size)
			abort();
	}
	desc_free(&d);
	free(buf);
	return 0;
}
