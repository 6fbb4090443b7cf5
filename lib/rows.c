/* rows.c: row selections. A selection narrows a validated geometry to some
 * of its windows: an index array or a mask becomes a copied table from
 * stored row to window, a range an offset; the fill applies either. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "geometry.h"

int pm__geom_select(struct pm__geom *g, const struct pm_rows *rows, uint64_t **sel_out)
{
	uint64_t *sel = NULL;
	size_t n = 0;

	if (sel_out)
		*sel_out = NULL;
	if (!rows || rows->kind == PM_ROWS_ALL) {
		if (rows && rows->size != 0 && rows->size != sizeof(*rows))
			return -PM_EOPTSIZE;
		return 0;
	}
	if (rows->size != 0 && rows->size != sizeof(*rows))
		return -PM_EOPTSIZE;
	if (rows->kind < 0 || rows->kind >= PM_ROWS_COUNT)
		return -PM_EROWSKIND;
	if (g->layout != PM_LAYOUT_ROWS)
		return -PM_EROWSLAYOUT;

	switch (rows->kind) {
	case PM_ROWS_RANGE:
		if (rows->begin > rows->end || rows->end > g->windows)
			return -PM_EROWRANGE;
		n = rows->end - rows->begin;
		if (!n)
			return -PM_EROWSEMPTY;
		g->sel_begin = rows->begin;
		break;
	case PM_ROWS_INDEX:
		if (!rows->count)
			return -PM_EROWSEMPTY;
		if (!rows->index)
			return -PM_ENULL;
		for (size_t i = 0; i < rows->count; i++)
			if (rows->index[i] >= g->windows)
				return -PM_EROWINDEX;
		n = rows->count;
		break;
	default: /* PM_ROWS_MASK */
		if (!rows->mask)
			return -PM_ENULL;
		if (rows->count != g->windows)
			return -PM_EMASKLEN;
		for (size_t i = 0; i < rows->count; i++)
			n += rows->mask[i] != 0;
		if (!n)
			return -PM_EROWSEMPTY;
		break;
	}
	if (__builtin_mul_overflow(n, g->pitch, &g->bytes) || g->bytes > PM__MAX_BYTES)
		return -PM_ETOOBIG;
	g->rows = n;
	if (rows->kind == PM_ROWS_RANGE || !sel_out)
		return 0;

	sel = malloc(n * sizeof(*sel));
	if (!sel)
		return -ENOMEM;
	if (rows->kind == PM_ROWS_INDEX) {
		memcpy(sel, rows->index, n * sizeof(*sel));
	} else {
		size_t k = 0;

		for (size_t i = 0; i < rows->count; i++)
			if (rows->mask[i])
				sel[k++] = i;
	}
	g->sel = sel;
	*sel_out = sel;
	return 0;
}
