/* fuzz-pnm.c: libFuzzer target for the PGM/PPM header parser: no read
 * outside the buffer, and an accepted header is consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pnm_header h;
	char err[IMG_ERRLEN];
	uint8_t *buf = malloc(size ? size : 1);
	size_t bytes;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (pnm_parse_header(buf, size, &h, err)) {
		if (!memchr(err, 0, IMG_ERRLEN) || !err[0])
			abort();
		free(buf);
		return 0;
	}
	if (h.data_offset > size || !h.width || !h.height || h.maxval < 1 || h.maxval > 65535 ||
	    (h.channels != 1 && h.channels != 3) ||
	    h.dtype != (h.maxval < 256 ? PM_DTYPE_U8 : PM_DTYPE_U16))
		abort();
	if (__builtin_mul_overflow(h.width * h.height, (size_t)h.channels * (h.maxval < 256 ? 1 : 2),
				   &bytes) ||
	    bytes != h.data_bytes)
		abort();
	free(buf);
	return 0;
}
