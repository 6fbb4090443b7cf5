/* fuzz-npy.c: libFuzzer target for the .npy header parser. Whatever the
 * bytes, the parser must not read outside them, and a header it accepts
 * must describe itself consistently; what npy_write_header writes for the
 * same array must parse back to the same array. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct npy_header h, back;
	char err[IMG_ERRLEN], hdr[1024];
	size_t n, elems = 1;
	/* a private copy of exactly `size` bytes, so that ASan sees overreads */
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (npy_parse_header(buf, size, &h, err)) {
		if (!memchr(err, 0, IMG_ERRLEN) || !err[0])
			abort(); /* every failure says why, in one string */
		free(buf);
		return 0;
	}
	if (h.data_offset > size || h.ndim < 1 || h.ndim > PM_MAX_DIMS || !npy_descr(h.dtype, (char[NPY_DESCR_LEN]){ 0 }))
		abort();
	for (int a = 0; a < h.ndim; a++)
		if (__builtin_mul_overflow(elems, h.shape[a], &elems))
			abort(); /* data_bytes overflowed unnoticed */
	n = npy_write_header(hdr, sizeof(hdr), h.dtype, h.ndim, h.shape, h.fortran_order);
	if (!n || n % 64)
		abort();
	if (npy_parse_header(hdr, n, &back, err) || back.dtype != h.dtype ||
	    back.ndim != h.ndim || back.fortran_order != h.fortran_order || back.big_endian ||
	    back.data_offset != n || back.data_bytes != h.data_bytes ||
	    memcmp(back.shape, h.shape, sizeof(size_t) * (size_t)h.ndim))
		abort();
	free(buf);
	return 0;
}
