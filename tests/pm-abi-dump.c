/* pm-abi-dump: prints the layout of patchmap.h's public structs and the
 * values of its constants, one per line, for the Python binding's ABI test
 * (python/tests/test_abi.py compares its ctypes mirror with these). */
#include <stddef.h>
#include <stdio.h>

#include "patchmap.h"

#define STRUCT(s) printf("sizeof %s %zu %zu\n", #s, sizeof(struct s), _Alignof(struct s))
#define FIELD(s, f) \
	printf("field %s %s %zu %zu\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define CONST(c) printf("const %s %lld\n", #c, (long long)(c))
#define UCONST(c) printf("const %s %llu\n", #c, (unsigned long long)(c))

int main(void)
{
	STRUCT(pm_lazy_opts);
	FIELD(pm_lazy_opts, backend);
	FIELD(pm_lazy_opts, budget);
	FIELD(pm_lazy_opts, chunk);
	FIELD(pm_lazy_opts, threads);
	FIELD(pm_lazy_opts, readahead);
	FIELD(pm_lazy_opts, flags);

	STRUCT(pm_stats);
	FIELD(pm_stats, size);
	FIELD(pm_stats, backend);
	FIELD(pm_stats, mechanism);
	FIELD(pm_stats, threads);
	FIELD(pm_stats, chunk_bytes);
	FIELD(pm_stats, budget_bytes);
	FIELD(pm_stats, faults);
	FIELD(pm_stats, chunks_filled);
	FIELD(pm_stats, bytes_filled);
	FIELD(pm_stats, evictions);
	FIELD(pm_stats, readahead_fills);
	FIELD(pm_stats, readahead_hits);
	FIELD(pm_stats, fill_errors);
	FIELD(pm_stats, resident_bytes);
	FIELD(pm_stats, peak_resident_bytes);
	FIELD(pm_stats, fill_ns);
	FIELD(pm_stats, memory_available);
	FIELD(pm_stats, budget_lowered);

	STRUCT(pm_source);
	FIELD(pm_source, data);
	FIELD(pm_source, dtype);
	FIELD(pm_source, ndim);
	FIELD(pm_source, shape);
	FIELD(pm_source, strides);
	FIELD(pm_source, has_channels);
	FIELD(pm_source, channel_axis);

	STRUCT(pm_window);
	FIELD(pm_window, size);
	FIELD(pm_window, step);
	FIELD(pm_window, dilation);
	FIELD(pm_window, pad_before);
	FIELD(pm_window, pad_after);

	STRUCT(pm_matrix_opts);
	FIELD(pm_matrix_opts, size);
	FIELD(pm_matrix_opts, source);
	FIELD(pm_matrix_opts, window);
	FIELD(pm_matrix_opts, pad_mode);
	FIELD(pm_matrix_opts, pad_value);
	FIELD(pm_matrix_opts, dtype);
	FIELD(pm_matrix_opts, affine);
	FIELD(pm_matrix_opts, scale);
	FIELD(pm_matrix_opts, offset);
	FIELD(pm_matrix_opts, order);
	FIELD(pm_matrix_opts, layout);
	FIELD(pm_matrix_opts, row_pitch);
	FIELD(pm_matrix_opts, lazy);

	STRUCT(pm_matrix_info);
	FIELD(pm_matrix_info, size);
	FIELD(pm_matrix_info, rows);
	FIELD(pm_matrix_info, cols);
	FIELD(pm_matrix_info, ld);
	FIELD(pm_matrix_info, elem_size);
	FIELD(pm_matrix_info, bytes);
	FIELD(pm_matrix_info, dtype);
	FIELD(pm_matrix_info, nspatial);
	FIELD(pm_matrix_info, out_shape);
	FIELD(pm_matrix_info, windows);
	FIELD(pm_matrix_info, window_elems);
	FIELD(pm_matrix_info, channels);

	STRUCT(pm_backend_probe);
	FIELD(pm_backend_probe, err);
	FIELD(pm_backend_probe, backend);
	FIELD(pm_backend_probe, mechanism);

	STRUCT(pm_memory);
	FIELD(pm_memory, size);
	FIELD(pm_memory, available);
	FIELD(pm_memory, kind);
	FIELD(pm_memory, limit);
	FIELD(pm_memory, used);
	FIELD(pm_memory, cgroup);
	FIELD(pm_memory, source);
	FIELD(pm_memory, machine_available);

	STRUCT(pm_system);
	FIELD(pm_system, size);
	FIELD(pm_system, kernel);
	FIELD(pm_system, machine);
	FIELD(pm_system, unprivileged_userfaultfd);
	FIELD(pm_system, uffd_full);
	FIELD(pm_system, uffd_user_only);
	FIELD(pm_system, dev_userfaultfd);
	FIELD(pm_system, uffd_api);
	FIELD(pm_system, uffd_features);
	FIELD(pm_system, uffd_move);
	FIELD(pm_system, uffd_poison);
	FIELD(pm_system, uffd_write_protect);
	FIELD(pm_system, thp);
	FIELD(pm_system, seccomp);
	FIELD(pm_system, backend_env);
	FIELD(pm_system, probe);
	FIELD(pm_system, memory);

	STRUCT(pm_rows);
	FIELD(pm_rows, size);
	FIELD(pm_rows, kind);
	FIELD(pm_rows, index);
	FIELD(pm_rows, mask);
	FIELD(pm_rows, count);
	FIELD(pm_rows, begin);
	FIELD(pm_rows, end);

	STRUCT(pm_fold_opts);
	FIELD(pm_fold_opts, size);
	FIELD(pm_fold_opts, mode);
	FIELD(pm_fold_opts, data);
	FIELD(pm_fold_opts, dtype);
	FIELD(pm_fold_opts, rows);
	FIELD(pm_fold_opts, cols);
	FIELD(pm_fold_opts, row_stride);
	FIELD(pm_fold_opts, col_stride);
	FIELD(pm_fold_opts, out);
	FIELD(pm_fold_opts, out_dtype);
	FIELD(pm_fold_opts, out_strides);
	FIELD(pm_fold_opts, matrix);

	CONST(PM_MAX_DIMS);
	CONST(PM_MAX_PAD);
	UCONST(PM_DEFAULT_BUDGET);
	UCONST(PM_DEFAULT_CHUNK);
	CONST(PM_DEFAULT_BUDGET_SHARE);
	UCONST(PM_BUDGET_UNLIMITED);
	CONST(PM_EFIRST);
	CONST(PM_ENULL);
	CONST(PM_EOPTSIZE);
	CONST(PM_EDTYPE);
	CONST(PM_EOUTDTYPE);
	CONST(PM_ENDIM);
	CONST(PM_ECHANNEL);
	CONST(PM_ESHAPE);
	CONST(PM_EWINDOW);
	CONST(PM_ESTEP);
	CONST(PM_EDILATION);
	CONST(PM_EPAD);
	CONST(PM_EPADMODE);
	CONST(PM_EPADVALUE);
	CONST(PM_EWINDOWBIG);
	CONST(PM_EORDER);
	CONST(PM_ELAYOUT);
	CONST(PM_EPITCH);
	CONST(PM_EAFFINE);
	CONST(PM_ETOOBIG);
	CONST(PM_EBACKEND);
	CONST(PM_ECHUNK);
	CONST(PM_ETHREADS);
	CONST(PM_ELENGTH);
	CONST(PM_ERANGE);
	CONST(PM_ESPEC);
	CONST(PM_EKEY);
	CONST(PM_EAMBIGUOUS);
	CONST(PM_EBUDGET);
	CONST(PM_EROWSKIND);
	CONST(PM_EROWINDEX);
	CONST(PM_EMASKLEN);
	CONST(PM_EROWSEMPTY);
	CONST(PM_EROWRANGE);
	CONST(PM_EROWSLAYOUT);
	CONST(PM_EFOLDSHAPE);
	CONST(PM_EFOLDMODE);
	CONST(PM_EMEMORY);
	CONST(PM_ELAST);
	CONST(PM_DTYPE_SAME);
	CONST(PM_DTYPE_U8);
	CONST(PM_DTYPE_I8);
	CONST(PM_DTYPE_U16);
	CONST(PM_DTYPE_I16);
	CONST(PM_DTYPE_U32);
	CONST(PM_DTYPE_I32);
	CONST(PM_DTYPE_F32);
	CONST(PM_DTYPE_F64);
	CONST(PM_DTYPE_I64);
	CONST(PM_DTYPE_U64);
	CONST(PM_DTYPE_BOOL);
	CONST(PM_DTYPE_F16);
	CONST(PM_BACKEND_AUTO);
	CONST(PM_BACKEND_UFFD);
	CONST(PM_BACKEND_SIGSEGV);
	CONST(PM_BACKEND_EAGER);
	CONST(PM_BACKEND_NONE);
	CONST(PM_PAD_ZERO);
	CONST(PM_PAD_CONSTANT);
	CONST(PM_PAD_EDGE);
	CONST(PM_PAD_REFLECT);
	CONST(PM_PAD_SYMMETRIC);
	CONST(PM_PAD_WRAP);
	CONST(PM_ORDER_WINDOW);
	CONST(PM_ORDER_CHANNEL);
	CONST(PM_LAYOUT_ROWS);
	CONST(PM_LAYOUT_COLS);
	CONST(PM_LAZY_WRITABLE);
	CONST(PM_MEMORY_UNKNOWN);
	CONST(PM_MEMORY_MACHINE);
	CONST(PM_MEMORY_CGROUP_V1);
	CONST(PM_MEMORY_CGROUP_MAX);
	CONST(PM_MEMORY_CGROUP_HIGH);
	CONST(PM_ROWS_ALL);
	CONST(PM_ROWS_INDEX);
	CONST(PM_ROWS_MASK);
	CONST(PM_ROWS_RANGE);
	CONST(PM_FOLD_SUM);
	CONST(PM_FOLD_MEAN);
	CONST(PM_FOLD_COUNT);
	printf("mech uffd_full %u\n", PM_MECH_UFFD_FULL);
	printf("mech uffd_user_only %u\n", PM_MECH_UFFD_USER_ONLY);
	printf("mech move %u\n", PM_MECH_MOVE);
	printf("mech copy %u\n", PM_MECH_COPY);
	printf("mech mremap %u\n", PM_MECH_MREMAP);
	printf("mech hugepages %u\n", PM_MECH_HUGEPAGES);
	printf("mech write_protect %u\n", PM_MECH_WRITE_PROTECT);
	printf("mech poison %u\n", PM_MECH_POISON);
	return 0;
}
