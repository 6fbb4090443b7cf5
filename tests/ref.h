/* ref.h: an independent im2col for the tests, written as plainly as possible
 * (nested loops over windows and window elements) and sharing no code with
 * the library: the library is checked byte for byte against it. */
#ifndef PM_TEST_REF_H
#define PM_TEST_REF_H

#include <stddef.h>

#include "patchmap.h"

struct ref_matrix {
	unsigned char *data;   /* rows * pitch bytes, pitch gaps zero */
	size_t rows, cols, pitch, elem;
};

/* Builds the matrix o describes. Returns 0, or -1 if o is invalid (the
 * reference's own checks, independent of the library's) or memory runs out. */
int ref_im2col(const struct pm_matrix_opts *o, struct ref_matrix *out);
void ref_free(struct ref_matrix *m);

#endif
