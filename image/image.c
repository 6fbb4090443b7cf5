/* image.c: libpatchmap-image. An image file opened with libvips becomes a
 * pm_source whose data is a pm_region; the region's fill decodes the band of
 * whole rows a chunk covers with a libvips region of its own, in the filler
 * thread that asks (libvips regions are per thread; images are shared). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>

#include "patchmap-image.h"

#define CACHE_MAX_OPS 16
#define CACHE_MAX_MEM ((size_t)32 << 20)

struct pm_image {
	VipsImage *vi;              /* what the region decodes: owned reference */
	VipsImage *root;            /* the loader's image, vi's origin: owned */
	struct pm_source src;
	struct pm_image_info info;
	pm_region *region;
	size_t row_bytes;
	pthread_mutex_t lock;       /* guards err_* */
	bool err_set;               /* a fill failed */
	bool err_own;               /* err_y0-err_y1 are rows whose decoding failed */
	size_t err_y0, err_y1;      /* the rows of a failed fill */
	char err_text[400];         /* the decoder's words, one line, or empty */
	atomic_bool poisoned;       /* failed: decodes no more, every fill fails */
	/* guarded by vips_error_lock: */
	pm_image *next, *prev;      /* every open image */
	int decoding;               /* its decodings in libvips now (decode) */
};

/* libvips keeps one error buffer per process: every read-and-clear of it
 * goes through this lock, so that our messages are not mixed up with each
 * other (a program that also calls libvips directly may still interleave).
 * It also guards the list of open images: text taken from the buffer may
 * be the only trace of a decoding failure in any image whose fills were in
 * libvips at that moment, and every one of them is failed. */
static pthread_mutex_t vips_error_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_image *open_images;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

/* libvips reports a damaged file twice: a warning on stderr, then the error
 * we return. A library does not print: its warnings are dropped. */
static void drop_log(const gchar *domain, GLogLevelFlags level, const gchar *text, gpointer data)
{
	(void)domain;
	(void)level;
	(void)text;
	(void)data;
}

static void init_vips(void)
{
	init_result = VIPS_INIT("patchmap") ? -PM_IMAGE_EINIT : 0;
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
			  drop_log, NULL);
}

static void cap_cache(void)
{
	vips_cache_set_max(CACHE_MAX_OPS);
	vips_cache_set_max_mem(CACHE_MAX_MEM);
}

/* Writes libvips' pending error text (and clears it) into msg as one line,
 * or `what` when there is none. Returns whether there was text. */
static bool take_vips_error(char *msg, size_t msglen, const char *what)
{
	char *text;
	size_t n = 0;
	bool found;

	pthread_mutex_lock(&vips_error_lock);
	text = vips_error_buffer_copy();
	found = text && *text;
	if (found)
		for (pm_image *im = open_images; im; im = im->next)
			if (im->decoding)
				atomic_store(&im->poisoned, true);
	pthread_mutex_unlock(&vips_error_lock);
	if (msg && msglen) {
		const char *t = text && *text ? text : what;

		/* newlines between the decoder's lines become "; " (blank lines
		 * and a separator at the end are dropped) */
		for (const char *p = t; *p && n + 1 < msglen; p++) {
			if (*p == '\n') {
				if (!n || (n >= 2 && msg[n - 2] == ';' && msg[n - 1] == ' '))
					continue;
				if (n + 3 >= msglen)
					break;
				msg[n++] = ';';
				msg[n++] = ' ';
			} else {
				msg[n++] = *p;
			}
		}
		while (n && (msg[n - 1] == ' ' || msg[n - 1] == ';'))
			n--;
		msg[n] = '\0';
	}
	g_free(text);
	return found;
}

/* Puts im on the list of open images, or takes it off. */
static void list_image(pm_image *im, bool on)
{
	pthread_mutex_lock(&vips_error_lock);
	if (on) {
		im->next = open_images;
		if (open_images)
			open_images->prev = im;
		open_images = im;
	} else {
		if (im->prev)
			im->prev->next = im->next;
		else
			open_images = im->next;
		if (im->next)
			im->next->prev = im->prev;
	}
	pthread_mutex_unlock(&vips_error_lock);
}

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (!msg || !msglen)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

static const char *mib(char *buf, size_t n, uint64_t bytes)
{
	snprintf(buf, n, bytes >= (uint64_t)10 << 30 ? "%.0f GiB" : "%.1f MiB",
		 bytes >= (uint64_t)10 << 30 ? (double)bytes / (1 << 30) : (double)bytes / (1 << 20));
	return buf;
}

/* The image region was refused (-PM_EMEMORY): which limit, and the figures.
 * The region keeps its budget in whole chunks, or all of it for eager or an
 * unlimited budget. */
static void memory_msg(char *msg, size_t msglen, size_t length, const struct pm_lazy_opts *lz)
{
	struct pm_memory m = { .size = sizeof(m) };
	size_t chunk = lz->chunk ? lz->chunk : PM_DEFAULT_CHUNK;
	uint64_t asks = length;
	char b1[32], b2[32];

	if (lz->backend != PM_BACKEND_EAGER && lz->budget && lz->budget != PM_BUDGET_UNLIMITED) {
		uint64_t b = lz->budget / chunk < 2 ? 2 * (uint64_t)chunk : lz->budget / chunk * chunk;

		asks = b < asks ? b : asks;
	}
	if (pm_memory_available(&m)) {
		set_msg(msg, msglen, "%s", pm_strerror(-PM_EMEMORY));
		return;
	}
	set_msg(msg, msglen, "image budget: %s allows %s more; the image's region asks %s; give "
			     "it a smaller budget, or none: the default fits",
		m.source, mib(b1, sizeof(b1), m.available), mib(b2, sizeof(b2), asks));
}

const char *pm_image_strerror(int code)
{
	int c = code < 0 ? -code : code;

	switch (c) {
	case PM_IMAGE_EDECODE:
		return "the image decoder refused the file or a part of it";
	case PM_IMAGE_EFORMAT:
		return "not an image format this build of libvips can read";
	case PM_IMAGE_ESAMPLE:
		return "the image's sample type (complex) has no array dtype";
	case PM_IMAGE_EPAGE:
		return "no such page in this image";
	case PM_IMAGE_ELEVEL:
		return "no such pyramid level in this image";
	case PM_IMAGE_EBANDS:
		return "a band index is outside the image's bands";
	case PM_IMAGE_EINIT:
		return "libvips could not be initialised";
	default:
		return pm_strerror(code);
	}
}

static int dtype_of(VipsBandFormat f)
{
	switch (f) {
	case VIPS_FORMAT_UCHAR: return PM_DTYPE_U8;
	case VIPS_FORMAT_CHAR: return PM_DTYPE_I8;
	case VIPS_FORMAT_USHORT: return PM_DTYPE_U16;
	case VIPS_FORMAT_SHORT: return PM_DTYPE_I16;
	case VIPS_FORMAT_UINT: return PM_DTYPE_U32;
	case VIPS_FORMAT_INT: return PM_DTYPE_I32;
	case VIPS_FORMAT_FLOAT: return PM_DTYPE_F32;
	case VIPS_FORMAT_DOUBLE: return PM_DTYPE_F64;
	default: return -1;
	}
}

static bool has_argument(VipsOperation *op, const char *name)
{
	/* asked of the class: vips_object_get_argument would post error text
	 * for an argument the loader lacks */
	return g_object_class_find_property(G_OBJECT_GET_CLASS(op), name) != NULL;
}

static int int_meta(VipsImage *vi, const char *name, int dflt)
{
	int v;
	const char *s;

	char *text;
	GType t = vips_image_get_typeof(vi, name);

	if (t == G_TYPE_INT && !vips_image_get_int(vi, name, &v))
		return v;
	if (t == G_TYPE_STRING && !vips_image_get_string(vi, name, &s))
		return atoi(s);
	/* OpenSlide's properties are reference-counted strings
	 * (VipsRefString), which only the as-string getter reads */
	if (t && !vips_image_get_as_string(vi, name, &text)) {
		v = atoi(text);
		g_free(text);
		return v;
	}
	return dflt;
}

/* Runs loader `name` on path with the given page / subifd / level (-1: not
 * set). Returns the image (a new reference) or NULL with libvips' error
 * pending. Not through libvips' operation cache: the cache would keep the
 * image, and with it the temporary file into which a format read front to
 * back (PNG, JPEG, striped TIFF) is decoded, as long as the process lives. */
static VipsImage *run_loader(const char *name, const char *path, int page, int subifd, int level)
{
	VipsOperation *op = vips_operation_new(name);
	VipsImage *out = NULL;

	if (!op)
		return NULL;
	if (vips_object_set(VIPS_OBJECT(op), "filename", path, "access", VIPS_ACCESS_RANDOM,
			    "fail_on", VIPS_FAIL_ON_ERROR, NULL) ||
	    (page >= 0 && vips_object_set(VIPS_OBJECT(op), "page", page, NULL)) ||
	    (subifd >= 0 && vips_object_set(VIPS_OBJECT(op), "subifd", subifd, NULL)) ||
	    (level >= 0 && vips_object_set(VIPS_OBJECT(op), "level", level, NULL)) ||
	    vips_object_build(VIPS_OBJECT(op))) {
		vips_object_unref_outputs(VIPS_OBJECT(op));
		g_object_unref(op);
		return NULL;
	}
	g_object_get(op, "out", &out, NULL);
	vips_object_unref_outputs(VIPS_OBJECT(op));
	g_object_unref(op);
	return out;
}

/* Pyramid levels of a TIFF: its SubIFDs plus the main image when it has
 * some, else the run of pages from the first on that each halve (rounding
 * either way) the one before, as `vips tiffsave --pyramid` writes them. */
static int tiff_levels(const char *path, VipsImage *first, bool *by_subifd)
{
	int nsub = int_meta(first, "n-subifds", 0);
	int pages = vips_image_get_n_pages(first);
	int levels = 1, w = first->Xsize;

	*by_subifd = nsub > 0;
	if (nsub > 0)
		return nsub + 1;
	for (int p = 1; p < pages; p++) {
		VipsImage *vi = run_loader("tiffload", path, p, -1, -1);
		int pw;

		if (!vi) {
			take_vips_error(NULL, 0, NULL);
			break;
		}
		pw = vi->Xsize;
		g_object_unref(vi);
		if (pw != w / 2 && pw != (w + 1) / 2)
			break;
		w = pw;
		levels++;
	}
	return levels;
}

/* libvips' tile cache paints a tile that failed to decode black and keeps
 * it: the request that decoded it may get the error, but any other (or
 * even that one) may get the black tile and success. The only trace is the
 * error text libvips posted. So a decoding also fails when error text is
 * pending, and an image whose decoding was in libvips when text was taken
 * is failed (from this image or another: which is not known); once an
 * image failed, it decodes no more: never a black tile as pixels.
 *
 * Decodes rect r of im into a new *reg (NULL if none was made), counted as
 * in libvips while it is there, and decides under the lock that takes
 * text, so that a decoding that starts later finds the image failed.
 * Returns whether the image has failed; *own: whether this decoding did. */
static bool decode(pm_image *im, VipsRegion **reg, const VipsRect *r, bool *own)
{
	bool bad;

	*reg = NULL;
	*own = false;
	pthread_mutex_lock(&vips_error_lock);
	bad = atomic_load(&im->poisoned);
	if (!bad)
		im->decoding++;
	pthread_mutex_unlock(&vips_error_lock);
	if (bad)
		return true;
	*reg = vips_region_new(im->vi);
	*own = !*reg || vips_region_prepare(*reg, r);
	pthread_mutex_lock(&vips_error_lock);
	im->decoding--;
	if (*own || vips_error_buffer()[0])
		atomic_store(&im->poisoned, true);
	bad = atomic_load(&im->poisoned);
	pthread_mutex_unlock(&vips_error_lock);
	return bad;
}

/* The fill: decodes the rows [offset, offset + len) touches, whole, and
 * copies the bytes asked for. */
static int fill(void *ctx, size_t offset, void *dst, size_t len)
{
	pm_image *im = ctx;
	size_t rb = im->row_bytes;
	size_t y0 = offset / rb, y1 = (offset + len - 1) / rb;
	VipsRect r = { 0, (int)y0, im->vi->Xsize, (int)(y1 - y0 + 1) };
	VipsRegion *reg;
	unsigned char *out = dst;
	bool failed, bad = decode(im, &reg, &r, &failed);

	if (bad) {
		char line[sizeof im->err_text];

		/* The text is taken and kept under one lock, so a fill of this
		 * image that finds it gone finds it kept. The rows kept are
		 * those of a fill whose own decoding failed, once one has: a
		 * fill may fail on the text of another. */
		pthread_mutex_lock(&im->lock);
		if (take_vips_error(line, sizeof line, "") && !im->err_text[0])
			memcpy(im->err_text, line, sizeof line);
		if (!im->err_set || (failed && !im->err_own)) {
			im->err_set = true;
			im->err_own = failed;
			im->err_y0 = y0;
			im->err_y1 = y1;
		}
		pthread_mutex_unlock(&im->lock);
		if (reg)
			g_object_unref(reg);
		return -EIO;
	}
	for (size_t y = y0; y <= y1; y++) {
		size_t row_start = y * rb;
		size_t a = offset > row_start ? offset - row_start : 0;
		size_t b = offset + len < row_start + rb ? offset + len - row_start : rb;
		const unsigned char *src = VIPS_REGION_ADDR(reg, 0, (int)y);

		memcpy(out + (row_start + a - offset), src + a, b - a);
	}
	g_object_unref(reg);
	return 0;
}

/* Keeps the bands listed, in order: a new reference, or NULL with libvips'
 * error pending. */
static VipsImage *select_bands(VipsImage *in, const int *bands, int n)
{
	VipsImage **parts = g_new0(VipsImage *, n);
	VipsImage *out = NULL;
	int i;

	for (i = 0; i < n; i++)
		if (vips_extract_band(in, &parts[i], bands[i], NULL))
			break;
	if (i == n && n == 1) {
		out = parts[0];
		parts[0] = NULL;
	} else if (i == n && vips_bandjoin(parts, &out, n, NULL)) {
		out = NULL;
	}
	for (i = 0; i < n; i++)
		if (parts[i])
			g_object_unref(parts[i]);
	g_free(parts);
	return out;
}

/* Drops the loader's image, and the operations of libvips' cache built on
 * it (the decode, band selection: they hold it), so that its memory and
 * temporary file go now, not at the process's end. */
static void release_root(pm_image *im)
{
	if (!im->root)
		return;
	vips_image_invalidate_all(im->root);
	g_object_unref(im->root);
	im->root = NULL;
}

static int open_image(const char *path, const struct pm_image_opts *o, pm_image *im,
		      char *msg, size_t msglen)
{
	const char *loader;
	VipsOperation *probe;
	bool has_page, has_level, has_subifd, by_subifd = false, jp2k;
	int page = -1, subifd = -1, level = -1;
	VipsImage *first, *vi, *t;
	struct pm_image_info *info = &im->info;
	struct stat st;
	int dtype;

	if (stat(path, &st)) {
		int e = errno;

		set_msg(msg, msglen, "%s", strerror(e));
		return -e;
	}
	if (S_ISDIR(st.st_mode)) {
		set_msg(msg, msglen, "%s", strerror(EISDIR));
		return -EISDIR;
	}
	/* libvips opens the file by its name more than once (to find the
	 * format, then to decode): a pipe would lose the bytes read first,
	 * and block the second open until another writer came */
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		set_msg(msg, msglen, "not a regular file (%s): images that libvips decodes are "
			"read from files, which it opens more than once",
			S_ISFIFO(st.st_mode) ? "a pipe" : S_ISSOCK(st.st_mode) ? "a socket" :
			"a character device");
		return -ESPIPE;
	}
	loader = vips_foreign_find_load(path);
	if (!loader) {
		take_vips_error(NULL, 0, NULL);
		set_msg(msg, msglen, "not an image format libvips can read here");
		return -PM_IMAGE_EFORMAT;
	}
	{
		const char *nick = vips_nickname_find(g_type_from_name(loader));

		snprintf(info->loader, sizeof info->loader, "%s", nick ? nick : loader);
	}
	probe = vips_operation_new(loader);
	if (!probe) {
		take_vips_error(msg, msglen, "cannot start the decoder");
		return -PM_IMAGE_EDECODE;
	}
	has_page = has_argument(probe, "page");
	has_level = has_argument(probe, "level");
	has_subifd = has_argument(probe, "subifd");
	g_object_unref(probe);

	/* Open the first page (or level) to learn how many there are. */
	first = run_loader(loader, path, has_page ? 0 : -1, -1, has_level ? 0 : -1);
	if (!first) {
		take_vips_error(msg, msglen, "the decoder refused the file");
		return -PM_IMAGE_EDECODE;
	}
	info->pages = has_page ? vips_image_get_n_pages(first) : 1;
	if (has_level)
		info->levels = int_meta(first, "openslide.level-count", 1);
	else if (has_subifd)
		info->levels = tiff_levels(path, first, &by_subifd);
	else
		info->levels = 1;
	if (info->pages < 1)
		info->pages = 1;
	g_object_unref(first);
	/* JPEG 2000: libvips gives the resolution levels as pages */
	jp2k = !strcmp(info->loader, "jp2kload");
	if (jp2k) {
		info->levels = info->pages;
		info->pages = 1;
	}

	if (o->page < 0 || o->page >= info->pages || (o->page > 0 && !has_page)) {
		set_msg(msg, msglen, "page: '%d' is not a page of the image, which has %d page%s "
			"(0 to %d)", o->page, info->pages, info->pages == 1 ? "" : "s",
			info->pages - 1);
		return -PM_IMAGE_EPAGE;
	}
	if (o->level < 0 || o->level >= info->levels) {
		set_msg(msg, msglen, "level: '%d' is not a level of the image, which has %d "
			"level%s (0 to %d)", o->level, info->levels, info->levels == 1 ? "" : "s",
			info->levels - 1);
		return -PM_IMAGE_ELEVEL;
	}
	if (o->level > 0 && !has_level && !by_subifd && o->page > 0) {
		set_msg(msg, msglen, "level: '%d' with page %d: this TIFF's levels are its "
			"pages; give one of them", o->level, o->page);
		return -PM_IMAGE_EPAGE;
	}
	if (has_page)
		page = o->page;
	if (jp2k)
		page = o->level;
	else if (has_level)
		level = o->level;
	else if (o->level > 0 && by_subifd)
		subifd = o->level - 1;
	else if (o->level > 0)
		page = o->level;
	info->page = o->page;
	info->level = o->level;

	vi = run_loader(loader, path, page, subifd, level);
	if (!vi) {
		take_vips_error(msg, msglen, "the decoder refused the file");
		return -PM_IMAGE_EDECODE;
	}
	im->root = vi;
	g_object_ref(vi);
	info->random_access = vips_foreign_flags(loader, path) & VIPS_FOREIGN_PARTIAL;
	if (vi->Coding != VIPS_CODING_NONE) {
		if (vips_image_decode(vi, &t)) {
			g_object_unref(vi);
			take_vips_error(msg, msglen, "cannot decode the image's coding");
			return -PM_IMAGE_EDECODE;
		}
		g_object_unref(vi);
		vi = t;
	}
	info->file_bands = vi->Bands;
	if (o->nbands < 0 || (o->nbands > 0 && !o->bands)) {
		g_object_unref(vi);
		set_msg(msg, msglen, "bands: %d band indices given%s", o->nbands,
			o->nbands > 0 ? " without the list" : "");
		return -PM_IMAGE_EBANDS;
	}
	for (int i = 0; i < o->nbands; i++) {
		if (o->bands[i] < 0 || o->bands[i] >= vi->Bands) {
			set_msg(msg, msglen, "bands: band %d is not a band of the image, which has "
				"%d band%s (0 to %d)", o->bands[i], vi->Bands,
				vi->Bands == 1 ? "" : "s", vi->Bands - 1);
			g_object_unref(vi);
			return -PM_IMAGE_EBANDS;
		}
	}
	if (o->nbands > 0) {
		t = select_bands(vi, o->bands, o->nbands);
		g_object_unref(vi);
		if (!t) {
			take_vips_error(msg, msglen, "cannot select the bands");
			return -PM_IMAGE_EDECODE;
		}
		vi = t;
	}
	im->vi = vi;
	dtype = dtype_of(vi->BandFmt);
	if (dtype < 0) {
		set_msg(msg, msglen, "samples of type %s have no array dtype",
			vips_enum_nick(VIPS_TYPE_BAND_FORMAT, vi->BandFmt));
		return -PM_IMAGE_ESAMPLE;
	}
	info->width = vi->Xsize;
	info->height = vi->Ysize;
	info->bands = vi->Bands;
	info->dtype = dtype;
	return 0;
}

int pm_image_open(const char *path, const struct pm_image_opts *o, pm_image **out,
		  char *msg, size_t msglen)
{
	static const struct pm_image_opts defaults;
	pm_image *im;
	size_t shape[3], length;
	int ret;

	if (msg && msglen)
		msg[0] = '\0';
	if (!out)
		return -PM_ENULL;
	*out = NULL;
	if (!path) {
		set_msg(msg, msglen, "%s", pm_strerror(-PM_ENULL));
		return -PM_ENULL;
	}
	if (!o)
		o = &defaults;
	if (o->size != 0 && o->size != sizeof *o) {
		set_msg(msg, msglen, "%s", pm_strerror(-PM_EOPTSIZE));
		return -PM_EOPTSIZE;
	}
	pthread_once(&init_once, init_vips);
	if (init_result) {
		set_msg(msg, msglen, "%s", pm_image_strerror(init_result));
		return init_result;
	}
	if (!(o->flags & PM_IMAGE_KEEP_VIPS_CACHE)) {
		static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

		pthread_once(&cache_once, cap_cache);
	}
	im = calloc(1, sizeof *im);
	if (!im) {
		set_msg(msg, msglen, "%s", pm_strerror(-ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&im->lock, NULL);
	ret = open_image(path, o, im, msg, msglen);
	if (ret)
		goto fail;

	shape[0] = (size_t)im->info.height;
	shape[1] = (size_t)im->info.width;
	shape[2] = (size_t)im->info.bands;
	if (__builtin_mul_overflow(shape[1] * shape[2], pm_dtype_size(im->info.dtype),
				   &im->row_bytes) ||
	    __builtin_mul_overflow(im->row_bytes, shape[0], &length)) {
		ret = -PM_ETOOBIG;
		set_msg(msg, msglen, "%s", pm_strerror(ret));
		goto fail;
	}
	ret = pm_source_contiguous(&im->src, NULL, im->info.dtype, im->info.bands > 1 ? 3 : 2,
				   shape);
	if (ret) {
		set_msg(msg, msglen, "%s", pm_strerror(ret));
		goto fail;
	}
	if (im->info.bands > 1) {
		im->src.has_channels = true;
		im->src.channel_axis = 2;
	}

	/* A decoder that reads front to back decodes the whole image at the
	 * first pixel asked for: ask for one now, so that a damaged file is
	 * refused here rather than in the middle of a scan. Listed first: it
	 * is a decoding like a fill's. */
	list_image(im, true);
	{
		VipsRegion *reg;
		VipsRect r = { 0, 0, 1, 1 };
		bool own;

		if (decode(im, &reg, &r, &own)) {
			take_vips_error(msg, msglen, "the decoder failed on the first pixel");
			if (reg)
				g_object_unref(reg);
			ret = -PM_IMAGE_EDECODE;
			goto fail_listed;
		}
		g_object_unref(reg);
	}

	{
		struct pm_region_opts ro = {
			.size = sizeof ro, .length = length, .fill = fill, .ctx = im, .lazy = o->lazy,
		};

		ret = pm_region_open(&ro, &im->region);
		if (ret == -PM_EMEMORY) {
			memory_msg(msg, msglen, length, &o->lazy);
			goto fail_listed;
		}
		if (ret) {
			/* named as every front end names the image's lazy.budget
			 * and lazy.chunk (doc/options.md) */
			set_msg(msg, msglen, "%s%s",
				ret == -PM_EBUDGET ? "image_budget: " :
				ret == -PM_ECHUNK ? "image_chunk: " : "", pm_strerror(ret));
			goto fail_listed;
		}
	}
	im->src.data = pm_region_data(im->region);
	*out = im;
	return 0;
fail_listed:
	list_image(im, false);
fail:
	if (im->vi)
		g_object_unref(im->vi);
	release_root(im);
	pthread_mutex_destroy(&im->lock);
	free(im);
	return ret;
}

int pm_image_close(pm_image *im)
{
	int ret;

	if (!im)
		return 0;
	ret = pm_region_close(im->region);
	list_image(im, false);
	g_object_unref(im->vi);
	release_root(im);
	pthread_mutex_destroy(&im->lock);
	free(im);
	return ret;
}

const struct pm_source *pm_image_source(const pm_image *im)
{
	return im ? &im->src : NULL;
}

const pm_region *pm_image_region(const pm_image *im)
{
	return im ? im->region : NULL;
}

int pm_image_info(const pm_image *im, struct pm_image_info *info)
{
	if (!im || !info)
		return -PM_ENULL;
	*info = im->info;
	return 0;
}

int pm_image_stats(const pm_image *im, struct pm_stats *st)
{
	if (!im || !st)
		return -PM_ENULL;
	return pm_region_stats(im->region, st);
}

int pm_image_error(const pm_image *im, char *msg, size_t msglen)
{
	pm_image *m = (pm_image *)im;
	int ret;

	if (!im)
		return -PM_ENULL;
	/* the code first: a fill keeps its message before its error is kept */
	ret = pm_region_error(im->region);
	if (msg && msglen) {
		pthread_mutex_lock(&m->lock);
		if (!m->err_set)
			msg[0] = '\0';
		else
			snprintf(msg, msglen, "rows %zu-%zu: %s", m->err_y0, m->err_y1,
				 m->err_text[0] ? m->err_text :
				 m->err_own ? "the decoder failed without saying why" :
				 "libvips reported an error meanwhile, its words taken elsewhere");
		pthread_mutex_unlock(&m->lock);
	}
	return ret;
}

/* ------------------------------------------------- reads that catch SIGBUS */

/* The calling thread's way back from a SIGBUS while it computes bytes of a
 * matrix; NULL when it is not computing. Set before the read in the same
 * thread, so that the handler never allocates the thread's TLS. */
static __thread sigjmp_buf *bus_return;
static struct sigaction bus_previous;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;
static int bus_installed;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *back = bus_return;

	if (back) {
		bus_return = NULL;
		siglongjmp(*back, 1);
	}
	/* not ours: as the handler found at install would */
	if (bus_previous.sa_flags & SA_SIGINFO) {
		bus_previous.sa_sigaction(sig, si, uc);
	} else if (bus_previous.sa_handler == SIG_IGN) {
		return;
	} else if (bus_previous.sa_handler != SIG_DFL) {
		bus_previous.sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

static void install_bus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	bus_installed = sigaction(SIGBUS, &sa, &bus_previous) ? -errno : 1;
}

/* pm_matrix_read with the SIGBUS of a failed fill turned into -EIO.
 * noinline: the jump buffer and what sigsetjmp returns to stay in one
 * frame, and no local lives in a register across the jump. */
static __attribute__((noinline)) int guarded_read(const pm_matrix *m, size_t offset, void *dst,
						  size_t len)
{
	sigjmp_buf back;
	volatile int ret = -EIO;

	if (sigsetjmp(back, 1) == 0) {
		bus_return = &back;
		ret = pm_matrix_read(m, offset, dst, len);
	}
	bus_return = NULL;
	return ret;
}

static int arm(void)
{
	pthread_once(&bus_once, install_bus);
	bus_return = NULL; /* the thread's TLS, allocated here and not in the handler */
	return bus_installed < 0 ? bus_installed : 0;
}

int pm_image_matrix_read(const pm_matrix *m, size_t offset, void *dst, size_t len)
{
	int e = arm();

	return e ? e : guarded_read(m, offset, dst, len);
}

#define WRITE_PIECE ((size_t)1 << 20)

int pm_image_matrix_write(const pm_matrix *m, int fd, size_t offset, size_t len)
{
	size_t piece = len < WRITE_PIECE ? len : WRITE_PIECE;
	char *buf;
	int e = arm();

	if (e)
		return e;
	if (fd < 0)
		return -EBADF;
	if (!m)
		return -PM_ENULL;
	if (offset > pm_matrix_bytes(m) || len > pm_matrix_bytes(m) - offset)
		return -PM_ERANGE;
	buf = malloc(piece ? piece : 1);
	if (!buf)
		return -ENOMEM;
	while (len) {
		size_t n = len < piece ? len : piece;

		e = guarded_read(m, offset, buf, n);
		for (size_t done = 0; !e && done < n;) {
			ssize_t w = write(fd, buf + done, n - done);

			if (w < 0 && errno != EINTR)
				e = -errno;
			else if (w > 0)
				done += (size_t)w;
		}
		if (e)
			break;
		offset += n;
		len -= n;
	}
	free(buf);
	return e;
}
