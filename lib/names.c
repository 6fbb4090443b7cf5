/* names.c: words for codes, dtypes, backends, pad modes, orders and layouts;
 * the version. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "patchmap.h"

const char *pm_version(void)
{
#define STR_(x) #x
#define STR(x) STR_(x)
	return STR(PM_VERSION_MAJOR) "." STR(PM_VERSION_MINOR) "." STR(PM_VERSION_PATCH);
}

static const char *const messages[PM_ELAST - PM_EFIRST] = {
	[PM_ENULL - PM_EFIRST] = "a required pointer is NULL",
	[PM_EOPTSIZE - PM_EFIRST] = "the options struct's size field names no known version "
				    "(set it to sizeof the struct, or 0)",
	[PM_EDTYPE - PM_EFIRST] = "unknown source dtype (use bool, uint8, int8, uint16, int16, "
				  "uint32, int32, uint64, int64, float16, float32 or float64)",
	[PM_EOUTDTYPE - PM_EFIRST] = "the output dtype must be float32, float64 or the source's own "
				     "(float16 only from a float16 source)",
	[PM_ENDIM - PM_EFIRST] = "the source must have 1 to 8 dimensions",
	[PM_ECHANNEL - PM_EFIRST] = "the channel axis is out of range, or leaves no axis to window",
	[PM_ESHAPE - PM_EFIRST] = "the source has an axis of extent 0",
	[PM_EWINDOW - PM_EFIRST] = "a window size is 0",
	[PM_ESTEP - PM_EFIRST] = "a window step is 0",
	[PM_EDILATION - PM_EFIRST] = "a window dilation is 0",
	[PM_EPAD - PM_EFIRST] = "padding must be between 0 and 2^32 samples per side",
	[PM_EPADMODE - PM_EFIRST] = "unknown padding mode (use zero, constant, edge, reflect, "
				    "symmetric or wrap)",
	[PM_EPADVALUE - PM_EFIRST] = "the constant pad value cannot be stored in the source dtype",
	[PM_EWINDOWBIG - PM_EFIRST] = "the window (with its dilation) is larger than the padded "
				      "source along some axis",
	[PM_EORDER - PM_EFIRST] = "unknown column order (use window or channel)",
	[PM_ELAYOUT - PM_EFIRST] = "unknown layout (use rows or columns)",
	[PM_EPITCH - PM_EFIRST] = "the row pitch must be at least one row of elements and a "
				  "multiple of the element size",
	[PM_EAFFINE - PM_EFIRST] = "scale and offset need a float32 or float64 output (not an "
				   "integer, bool or float16 one)",
	[PM_ETOOBIG - PM_EFIRST] = "the sizes overflow, or the matrix is larger than the 64 TiB "
				   "that can be reserved",
	[PM_EBACKEND - PM_EFIRST] = "unknown backend (use auto, uffd, sigsegv or eager; \"none\" "
				    "only for a matrix without a mapping)",
	[PM_ECHUNK - PM_EFIRST] = "the chunk size must be a power of two from the page size to 64 TiB",
	[PM_ETHREADS - PM_EFIRST] = "the thread count must be from 0 (the default) to 1024",
	[PM_ELENGTH - PM_EFIRST] = "the region length is 0",
	[PM_ERANGE - PM_EFIRST] = "the byte range runs past the end of the matrix",
	[PM_ESPEC - PM_EFIRST] = "an option's value cannot be used (pm_spec_error says which "
				 "and why)",
	[PM_EKEY - PM_EFIRST] = "no option has this name (see doc/options.md for the keys)",
	[PM_EAMBIGUOUS - PM_EFIRST] = "ambiguous dtype: \"u8\" and \"i8\" read as 8 bits (uint8, "
				      "int8) or as numpy's 8 bytes (uint64, int64); write uint8, "
				      "u1, uint64 or <u8",
	[PM_EBUDGET - PM_EFIRST] = "the budget must hold at least two chunks (raise the budget "
				   "or lower the chunk size)",
	[PM_EROWSKIND - PM_EFIRST] = "unknown row selection kind (use all, index, mask or range)",
	[PM_EROWINDEX - PM_EFIRST] = "a selected row index is not below the number of windows "
				     "(the product of the out_shape)",
	[PM_EMASKLEN - PM_EFIRST] = "the row mask must have one entry per window (the product of "
				    "the out_shape)",
	[PM_EROWSEMPTY - PM_EFIRST] = "the row selection selects no window",
	[PM_EROWRANGE - PM_EFIRST] = "the row range must satisfy begin <= end <= the number of "
				     "windows (the product of the out_shape)",
	[PM_EROWSLAYOUT - PM_EFIRST] = "a row selection needs layout rows (one row per window)",
	[PM_EFOLDSHAPE - PM_EFIRST] = "the fold input must have one row per window (or selected "
				      "row) and window_elems, channels or 1 columns (transposed "
				      "for layout cols)",
	[PM_EFOLDMODE - PM_EFIRST] = "unknown fold mode (use sum, mean or count)",
	[PM_EMEMORY - PM_EFIRST] = "the budget (or the whole matrix, for the eager backend or an "
				   "unlimited budget) is more memory than this process may still "
				   "take: its cgroup's memory limit or the machine's available "
				   "memory (see pm_memory_available); give a smaller budget, or "
				   "none",
};

const char *pm_strerror(int code)
{
	const char *s;

	if (code == INT_MIN)
		return "unknown error";
	if (code < 0)
		code = -code;
	if (code == 0)
		return "success";
	if (code >= PM_EFIRST && code < PM_ELAST)
		return messages[code - PM_EFIRST];
	/* The kernel's words, and what they mean for this library. */
	switch (code) {
	case EPERM:
		return "operation not permitted (userfaultfd may need privilege: see "
		       "vm.unprivileged_userfaultfd, or choose the sigsegv backend)";
	case ENOSYS:
		return "the kernel lacks a needed call (choose another backend)";
	case ENOMEM:
		return "out of memory, or of address space for the reservation";
	}
	s = strerrordesc_np(code);
	return s ? s : "unknown error";
}

int pm_error_errno(int code)
{
	if (code == INT_MIN || code == 0)
		return code == 0 ? 0 : EINVAL;
	if (code < 0)
		code = -code;
	if (code == PM_ETOOBIG)
		return EOVERFLOW;
	if (code == PM_EMEMORY)
		return ENOMEM;
	/* The library's input errors, and codes neither it nor the kernel
	 * returns (errno values stay below 4096): EINVAL, never a number
	 * that no errno is. */
	if (code >= PM_EFIRST)
		return EINVAL;
	return code;
}

static const struct {
	const char *name;
	size_t size;
} dtypes[PM_DTYPE_COUNT] = {
	[PM_DTYPE_U8] = { "uint8", 1 },    [PM_DTYPE_I8] = { "int8", 1 },
	[PM_DTYPE_U16] = { "uint16", 2 },  [PM_DTYPE_I16] = { "int16", 2 },
	[PM_DTYPE_U32] = { "uint32", 4 },  [PM_DTYPE_I32] = { "int32", 4 },
	[PM_DTYPE_F32] = { "float32", 4 }, [PM_DTYPE_F64] = { "float64", 8 },
	[PM_DTYPE_I64] = { "int64", 8 },   [PM_DTYPE_U64] = { "uint64", 8 },
	[PM_DTYPE_BOOL] = { "bool", 1 },   [PM_DTYPE_F16] = { "float16", 2 },
};

size_t pm_dtype_size(int dtype)
{
	return dtype > 0 && dtype < PM_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

const char *pm_dtype_name(int dtype)
{
	return dtype > 0 && dtype < PM_DTYPE_COUNT ? dtypes[dtype].name : NULL;
}

/* Names are matched whole, without regard to case. */
static int parse_name(const char *name, const char *const *names, int count, int err)
{
	for (int i = 0; name && i < count; i++)
		if (names[i] && !strcasecmp(name, names[i]))
			return i;
	return err;
}

static const char *const backends[PM_BACKEND_COUNT] = { "auto", "uffd", "sigsegv", "eager", "none" };

const char *pm_backend_name(int backend)
{
	return backend >= 0 && backend < PM_BACKEND_COUNT ? backends[backend] : NULL;
}

int pm_backend_parse(const char *name)
{
	return parse_name(name, backends, PM_BACKEND_COUNT, -PM_EBACKEND);
}

static const char *const pad_modes[PM_PAD_COUNT] = {
	[PM_PAD_ZERO] = "zero",       [PM_PAD_CONSTANT] = "constant",   [PM_PAD_EDGE] = "edge",
	[PM_PAD_REFLECT] = "reflect", [PM_PAD_SYMMETRIC] = "symmetric", [PM_PAD_WRAP] = "wrap",
};

const char *pm_pad_mode_name(int mode)
{
	return mode >= 0 && mode < PM_PAD_COUNT ? pad_modes[mode] : NULL;
}

int pm_pad_mode_parse(const char *name)
{
	return parse_name(name, pad_modes, PM_PAD_COUNT, -PM_EPADMODE);
}

static const char *const orders[PM_ORDER_COUNT] = {
	[PM_ORDER_WINDOW] = "window",
	[PM_ORDER_CHANNEL] = "channel",
};

const char *pm_order_name(int order)
{
	return order >= 0 && order < PM_ORDER_COUNT ? orders[order] : NULL;
}

int pm_order_parse(const char *name)
{
	return parse_name(name, orders, PM_ORDER_COUNT, -PM_EORDER);
}

static const char *const layouts[PM_LAYOUT_COUNT] = {
	[PM_LAYOUT_ROWS] = "rows",
	[PM_LAYOUT_COLS] = "cols",
};

const char *pm_layout_name(int layout)
{
	return layout >= 0 && layout < PM_LAYOUT_COUNT ? layouts[layout] : NULL;
}

int pm_layout_parse(const char *name)
{
	static const char *const columns[] = { "columns" };

	if (parse_name(name, columns, 1, -1) == 0)
		return PM_LAYOUT_COLS;
	return parse_name(name, layouts, PM_LAYOUT_COUNT, -PM_ELAYOUT);
}
