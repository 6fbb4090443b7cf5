/* fold.c: `patchmap fold`, the way back from a patch matrix (or one value
 * or vector per window) to its image: pm_fold over the input .npy's
 * mapping, the image written as a .npy under a temporary name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const char *const mode_names[] = { "sum", "mean", "count" };

int cmd_fold(const struct args *a)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct pm_fold_opts f = { .size = sizeof(f) };
	struct fe_rows sel = { 0 };
	struct pm_source geom;
	struct outfile of;
	char err[IMG_ERRLEN], hdr[512], b1[64], b2[64];
	size_t rows, cols, hlen, n = 1, bytes, nwin;
	struct img in;
	void *image = NULL;
	double t0, t;
	int ret = 1, e;
	bool opened = false;

	if (img_open(a->image, NULL, &in, err))
		return cli_err("%s: %s", a->image, err), 1;
	/* pm_fold reads the input through its mapping: a file that shrinks
	 * meanwhile is an error, not a crash */
	if (cli_image_guard(&in, a->image))
		goto out;
	if (strcmp(in.format, "npy") || in.src.ndim > 2) {
		cli_err("%s: fold reads a .npy of shape (windows, values) or (windows,), not %s %s",
			a->image, pm__fmt_dims(b1, sizeof(b1), in.src.shape, in.src.ndim), in.format);
		goto out;
	}
	/* The geometry: the image's shape, no pixels. */
	if (pm_source_contiguous(&geom, NULL, PM_DTYPE_U8, a->image_ndim, a->image_shape)) {
		cli_err("--image-shape: %s is not an image shape the library takes",
			pm__fmt_dims(b1, sizeof(b1), a->image_shape, a->image_ndim));
		goto out;
	}
	/* The output's dtype is judged here: the library would judge it against
	 * the uint8 stand-in above, a source the user never gave. Names that
	 * are no dtype at all get the grammar's message from args_matrix. */
	if (a->dtype_text) {
		int d = strcasecmp(a->dtype_text, "same") ? pm_dtype_parse(a->dtype_text, NULL)
							   : PM_DTYPE_SAME;

		if (d == PM_DTYPE_SAME) {
			cli_err("dtype: fold writes float32 or float64, not same (fold has no source "
				"image whose dtype it could keep)");
			goto out;
		}
		if (d > 0 && d != PM_DTYPE_F32 && d != PM_DTYPE_F64) {
			cli_err("dtype: fold writes float32 or float64, not %s", pm_dtype_name(d));
			goto out;
		}
	}
	if (args_matrix(a, &(struct img){ .src = geom }, &o, &sel, &info))
		goto out;
	for (int i = 0; i < a->image_ndim; i++)
		if (__builtin_mul_overflow(n, a->image_shape[i], &n))
			goto too_big;
	f.out_dtype = a->dtype_text ? o.dtype : PM_DTYPE_F64;
	if (__builtin_mul_overflow(n, pm_dtype_size(f.out_dtype), &bytes))
		goto too_big;

	/* The input as the layout stores it: rows x cols, or the transpose. */
	rows = in.src.shape[0];
	cols = in.src.ndim == 2 ? in.src.shape[1] : 1;
	f.mode = a->fold_mode;
	f.data = in.src.data;
	f.dtype = in.src.dtype;
	f.rows = rows;
	f.cols = cols;
	f.row_stride = in.src.strides[0];
	f.col_stride = in.src.ndim == 2 ? in.src.strides[1] : 0;
	if (!f.row_stride && !f.col_stride)
		f.row_stride = (ptrdiff_t)pm_dtype_size(f.dtype); /* one row: not "packed" */
	/* A matrix with padded rows (--row-pitch): rows of ld values, of which
	 * the first window_elems are the window's, the rest padding. */
	if (o.row_pitch) {
		if (o.layout != PM_LAYOUT_ROWS || in.src.ndim != 2 ||
		    in.src.strides[1] != (ptrdiff_t)pm_dtype_size(in.src.dtype) ||
		    in.src.strides[0] != (ptrdiff_t)o.row_pitch) {
			cli_err("%s: --row-pitch %zu: the input's rows are %td bytes apart%s", a->image,
				o.row_pitch, in.src.strides[0],
				o.layout != PM_LAYOUT_ROWS ? " (and a pitch is for layout rows)" :
				in.src.ndim != 2 ? " (a pitch is for a 2-D matrix)" :
				"; give the pitch of the input, or none for a packed input");
			goto out;
		}
		f.cols = info.window_elems;
	}
	nwin = o.layout == PM_LAYOUT_ROWS ? info.rows : info.cols;
	if ((o.layout == PM_LAYOUT_ROWS ? rows : cols) != nwin) {
		cli_err("%s: shape %s, but the geometry has %zu %s (out_shape %s): one %s per "
			"window",
			a->image, pm__fmt_dims(b1, sizeof(b1), in.src.shape, in.src.ndim), nwin,
			sel.rows.kind == PM_ROWS_ALL ? "windows" : "selected windows",
			pm__fmt_dims(b2, sizeof(b2), info.out_shape, info.nspatial),
			o.layout == PM_LAYOUT_ROWS ? "row" : "column (layout cols)");
		goto out;
	}

	/* Every output refused before anything is written. */
	if (cli_out_check(a->out, a))
		goto out;
	image = malloc(bytes ? bytes : 1);
	if (!image) {
		cli_err("out of memory for the %s image (%zu bytes)", pm_dtype_name(f.out_dtype),
			bytes);
		goto out;
	}
	f.out = image;
	t0 = now_s();
	e = pm_fold(&o, &sel.rows, &f);
	t = now_s() - t0;
	if (e) {
		if (e == -PM_EFOLDSHAPE)
			cli_err("%s: shape %s does not fit the geometry: (windows, window elements "
				"%zu), (windows, channels %zu) or (windows,)",
				a->image, pm__fmt_dims(b1, sizeof(b1), in.src.shape, in.src.ndim),
				info.window_elems, info.channels);
		else
			cli_err("fold: %s", pm_strerror(e));
		goto out;
	}
	hlen = npy_write_header(hdr, sizeof(hdr), f.out_dtype, a->image_ndim, a->image_shape,
				false);
	if (!hlen || cli_out_open(&of, a->out, hlen + bytes, a))
		goto out;
	opened = true;
	if ((e = out_pwrite(&of, hdr, hlen, 0)) || (e = out_pwrite(&of, image, bytes, hlen))) {
		cli_err("cannot write '%s': %s", a->out, strerror(-e));
		goto out;
	}
	if (cli_out_close(&of))
		goto out;

	FILE *rep = cli_on_stdout(a->out) ? stderr : stdout;
	size_t in_bytes = rows * cols * pm_dtype_size(f.dtype);
	uint64_t hwm = status_bytes("VmHWM");

	if (a->json) {
		struct json j;

		json_begin(&j, rep);
		json_str(&j, "command", "fold");
		json_obj(&j, "input");
		json_str(&j, "path", a->image);
		json_str(&j, "dtype", pm_dtype_name(f.dtype));
		json_dims(&j, "shape", in.src.shape, in.src.ndim);
		json_close(&j, '}');
		fe_report_options(&j, &o, &info);
		fe_report_matrix(&j, &info);
		fe_report_rows(&j, &sel);
		json_obj(&j, "output");
		json_str(&j, "path", a->out);
		json_dims(&j, "shape", a->image_shape, a->image_ndim);
		json_str(&j, "dtype", pm_dtype_name(f.out_dtype));
		json_str(&j, "mode", mode_names[f.mode]);
		json_u64(&j, "bytes", hlen + bytes);
		json_close(&j, '}');
		json_num(&j, "seconds", t);
		json_num(&j, "gb_per_s", (double)in_bytes / t / 1e9);
		json_u64(&j, "peak_rss_bytes", hwm);
		json_end(&j);
	} else if (!a->quiet) {
		fprintf(rep, "fold: %s (%s %s) -> %s, %s %s image, %s of the overlaps\n", a->image,
			pm__fmt_dims(b1, sizeof(b1), in.src.shape, in.src.ndim), pm_dtype_name(f.dtype),
			a->out, pm__fmt_dims(b2, sizeof(b2), a->image_shape, a->image_ndim),
			pm_dtype_name(f.out_dtype), mode_names[f.mode]);
		fprintf(rep, "  time        %.3f s: %.2f GB/s of matrix\n", t,
			(double)in_bytes / t / 1e9);
		fprintf(rep, "  peak RSS    %s (VmHWM)\n", pm__fmt_bytes(b1, sizeof(b1), (double)hwm));
	}
	/* the report first: if it fails, so does the command, old file kept */
	if (cli_report_done(rep))
		goto out;
	opened = false;
	if (cli_out_commit(&of))
		goto out;
	ret = 0;
	goto out;
too_big:
	cli_err("--image-shape: %s is too large", pm__fmt_dims(b1, sizeof(b1), a->image_shape,
							   a->image_ndim));
out:
	if (opened)
		out_abort(&of);
	cli_image_unguard();
	free(image);
	fe_rows_free(&sel);
	img_close(&in);
	return ret;
}
