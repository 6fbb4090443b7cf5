/* descriptor.h: the .patchmap descriptor format (preload/README.md): a few
 * `key = value` lines naming a source image and the options of its patch
 * matrix. Parsing is a pure function of a buffer (fuzzed on its own); the
 * values are read by the front ends' core (common/options.h), so that a
 * descriptor accepts the tool's and Python's spellings with the same
 * messages. desc_matrix() turns a parsed descriptor and the loaded source
 * into matrix options. Nothing here prints, opens files or calls into the
 * library's lazy machinery. */
#ifndef PM_PRELOAD_DESCRIPTOR_H
#define PM_PRELOAD_DESCRIPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"
#include "patchmap.h"

/* Room for any message these functions write. */
#define DESC_ERRLEN 600
/* The message for a source in none of the image reader's formats
 * (IMG_EFORMAT), with how a descriptor gives a raw file: by its keys. */
#define DESC_UNKNOWN_FORMAT "not a .npy, PGM or PPM file (for raw samples give shape and raw_dtype)"
/* Longest descriptor accepted: a guard against naming the wrong file. */
#define DESC_MAX_BYTES ((size_t)64 << 10)
/* Longest source path. */
#define DESC_PATH_MAX 4096

/* Keys: source and format are the descriptor's own; then the raw image
 * keys (fe_raw_key_name) and the library's spec keys (pm_spec_key), as
 * every front end spells them. A key's number indexes desc.line. */
enum { DK_SOURCE, DK_FORMAT, DK_RAW, DK_SPEC = DK_RAW + FE_RAW_COUNT };
#define DESC_MAX_KEYS (DK_SPEC + 64)

/* The key's name as written in a descriptor, NULL past the last. */
const char *desc_key_name(int key);
/* The number of a key given by name (exactly as written), or -1. */
int desc_key(const char *name);

enum desc_format { DESC_RAW = 0, DESC_NPY };

struct desc {
	int line[DESC_MAX_KEYS];       /* where each key was given; 0: not given */
	char source[DESC_PATH_MAX];    /* as written (relative or absolute) */
	int format;                    /* enum desc_format */
	struct fe_options opt;         /* the matrix's and the raw file's options */
};

/* Parses text[0, len) (need not be NUL-terminated). Returns 0, or -1 with
 * one line in err (DESC_ERRLEN bytes) and the descriptor line it concerns
 * in *line (0 when it concerns no single line, e.g. a missing key). Never
 * reads outside the buffer. desc_free() frees what d holds, either way. */
int desc_parse(const char *text, size_t len, struct desc *d, char *err, int *line);
void desc_free(struct desc *d);

/* Fills o from the descriptor and the loaded source array (its data pointer
 * may be NULL: only the shape is used here) with pm_spec_matrix, and so
 * checks it with pm_matrix_describe into *info. Returns 0, or -1 with the
 * grammar's message in err and the line of the key it names in *line. */
int desc_matrix(struct desc *d, const struct pm_source *src, struct pm_matrix_opts *o,
		struct pm_matrix_info *info, char *err, int *line);

/* The descriptor's row selection for o (from desc_matrix): fe_options_rows,
 * files relative to dir (the descriptor's directory). Returns 0, or -1 with
 * the message in err and the line of the key it names in *line; free sel
 * with fe_rows_free either way. */
int desc_rows(struct desc *d, const char *dir, const struct pm_matrix_opts *o,
	      struct fe_rows *sel, struct pm_matrix_info *info, char *err, int *line);

#endif
