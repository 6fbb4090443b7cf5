/* matrix.c: the patch matrix as a region whose fill is the im2col fill. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fill.h"
#include "region.h"

struct pm_matrix {
	struct pm__fill fill;
	pm_region *region;
	uint64_t *sel;      /* the row selection's table, or NULL */
};

/* A read-ahead chunk is read later, from another CPU, by when it has left
 * this CPU's caches: it is stored past them (the packed rows; bench/README.md
 * section 2), and fenced before the region publishes it. */
static int matrix_fill(void *ctx, size_t off, void *dst, size_t len)
{
	pm__fill_stream = pm__fill_later;
	pm__fill(ctx, off, dst, len);
	if (pm__fill_stream) {
		pm__fill_stream = false;
#if defined(__x86_64__)
		__builtin_ia32_sfence();
#endif
	}
	return 0;
}

static int info_from(const struct pm__geom *g, struct pm_matrix_info *out)
{
	struct pm_matrix_info i, *info = &i;

	memset(info, 0, sizeof(*info));
	info->rows = g->rows;
	info->cols = g->cols;
	info->elem_size = g->out_size;
	info->ld = g->pitch / g->out_size;
	info->bytes = g->bytes;
	info->dtype = g->dtype;
	info->nspatial = g->ns;
	for (int a = 0; a < g->ns; a++)
		info->out_shape[a] = (size_t)g->ax[a].out;
	info->windows = g->windows;
	info->window_elems = g->window_elems;
	info->channels = (size_t)g->channels;
	return pm__out_struct(out, info, sizeof(*info));
}

int pm_matrix_describe_rows(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
			    struct pm_matrix_info *info)
{
	struct pm__geom g;
	int err;

	if (!info)
		return -PM_ENULL;
	err = pm__geom_init(&g, opts, false);
	if (!err)
		err = pm__geom_select(&g, rows, NULL);
	if (err)
		return err;
	return info_from(&g, info);
}

int pm_matrix_describe(const struct pm_matrix_opts *opts, struct pm_matrix_info *info)
{
	return pm_matrix_describe_rows(opts, NULL, info);
}

int pm_matrix_open_rows(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
			pm_matrix **out)
{
	struct pm__geom g;
	uint64_t *sel = NULL;
	pm_matrix *m;
	int err;

	if (!out)
		return -PM_ENULL;
	*out = NULL;
	err = pm__geom_init(&g, opts, true);
	if (!err)
		err = pm__geom_select(&g, rows, &sel);
	if (err)
		return err;
	m = malloc(sizeof(*m));
	if (!m) {
		free(sel);
		return -ENOMEM;
	}
	pm__fill_init(&m->fill, &g);
	m->region = NULL;
	m->sel = sel;
	err = opts->lazy.backend == PM_BACKEND_NONE
		      ? 0
		      : pm__region_open(g.bytes, matrix_fill, &m->fill, &opts->lazy, &m->region);
	if (err) {
		free(sel);
		free(m);
		return err;
	}
	*out = m;
	return 0;
}

int pm_matrix_open(const struct pm_matrix_opts *opts, pm_matrix **out)
{
	return pm_matrix_open_rows(opts, NULL, out);
}

int pm_matrix_close(pm_matrix *m)
{
	int err;

	if (!m)
		return 0;
	err = pm_region_close(m->region);
	free(m->sel);
	free(m);
	return err;
}

const void *pm_matrix_data(const pm_matrix *m)
{
	return m ? pm_region_data(m->region) : NULL;
}

size_t pm_matrix_rows(const pm_matrix *m)
{
	return m ? m->fill.g.rows : 0;
}

size_t pm_matrix_cols(const pm_matrix *m)
{
	return m ? m->fill.g.cols : 0;
}

size_t pm_matrix_ld(const pm_matrix *m)
{
	return m ? m->fill.g.pitch / m->fill.g.out_size : 0;
}

size_t pm_matrix_elem_size(const pm_matrix *m)
{
	return m ? m->fill.g.out_size : 0;
}

size_t pm_matrix_bytes(const pm_matrix *m)
{
	return m ? m->fill.g.bytes : 0;
}

int pm_matrix_dtype(const pm_matrix *m)
{
	return m ? m->fill.g.dtype : -PM_ENULL;
}

int pm_matrix_info(const pm_matrix *m, struct pm_matrix_info *info)
{
	if (!m || !info)
		return -PM_ENULL;
	return info_from(&m->fill.g, info);
}

int pm_matrix_read(const pm_matrix *m, size_t offset, void *dst, size_t len)
{
	if (!m || (!dst && len))
		return -PM_ENULL;
	if (offset > m->fill.g.bytes || len > m->fill.g.bytes - offset)
		return -PM_ERANGE;
	pm__fill(&m->fill, offset, dst, len);
	return 0;
}

int pm_matrix_stats(const pm_matrix *m, struct pm_stats *st)
{
	if (!m || !st)
		return -PM_ENULL;
	if (m->region)
		return pm_region_stats(m->region, st);
	struct pm_stats none = { .backend = PM_BACKEND_NONE, .memory_available = UINT64_MAX };

	return pm__out_struct(st, &none, sizeof(none));
}

int pm_matrix_error(const pm_matrix *m)
{
	if (!m)
		return -PM_ENULL;
	return m->region ? pm_region_error(m->region) : 0;
}

int pm_source_contiguous(struct pm_source *src, const void *data, int dtype, int ndim,
			 const size_t *shape)
{
	size_t stride;

	if (!src || !shape)
		return -PM_ENULL;
	if (dtype <= PM_DTYPE_SAME || dtype >= PM_DTYPE_COUNT)
		return -PM_EDTYPE;
	if (ndim < 1 || ndim > PM_MAX_DIMS)
		return -PM_ENDIM;
	memset(src, 0, sizeof(*src));
	src->data = data;
	src->dtype = dtype;
	src->ndim = ndim;
	stride = pm_dtype_size(dtype);
	for (int i = ndim - 1; i >= 0; i--) {
		src->shape[i] = shape[i];
		src->strides[i] = (ptrdiff_t)stride;
		if (shape[i] && __builtin_mul_overflow(stride, shape[i], &stride))
			return -PM_ETOOBIG;
		if (stride > (size_t)PTRDIFF_MAX)
			return -PM_ETOOBIG;
	}
	return 0;
}
