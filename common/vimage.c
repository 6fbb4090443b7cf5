/* vimage.c: image files libvips reads, for the front ends, through
 * libpatchmap-image. The library is loaded on first use (dlopen), so that
 * the tool and the preload shim need libvips only when such a file is
 * opened: a program run under the shim does not load libvips and GLib for a
 * .npy source. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "options.h"
#include "patchmap-image.h"

#define SONAME "libpatchmap-image.so.1"

static struct {
	int (*open)(const char *, const struct pm_image_opts *, pm_image **, char *, size_t);
	int (*close)(pm_image *);
	const struct pm_source *(*source)(const pm_image *);
	const pm_region *(*region)(const pm_image *);
	int (*info)(const pm_image *, struct pm_image_info *);
	int (*error)(const pm_image *, char *, size_t);
	const char *(*strerror)(int);
	int (*matrix_read)(const pm_matrix *, size_t, void *, size_t);
	char why[IMG_ERRLEN];
} api;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static bool api_ok;

/* The library beside the object this code is linked into: in a build tree
 * the tool is tools/patchmap and the shim preload/libpatchmap-preload.so,
 * the library image/libpatchmap-image.so.1. */
static void *open_beside(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	Dl_info di;
	char *slash;

	if (!dladdr((void *)open_beside, &di) || !di.dli_fname)
		return NULL;
	/* the executable's name is as it was run ("patchmap", from PATH) */
	if (strchr(di.dli_fname, '/')) {
		snprintf(dir, sizeof dir, "%s", di.dli_fname);
	} else {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);

		if (n <= 0)
			return NULL;
		dir[n] = '\0';
	}
	slash = strrchr(dir, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	snprintf(path, sizeof path, "%s/../image/" SONAME, dir);
	return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

static void load(void)
{
	const char *env = getenv("PATCHMAP_IMAGE_LIBRARY");
	void *h = NULL;

	/* As Python's imread finds it: the variable, the loader's search (the
	 * run path of the tool or shim installed), a build tree. */
	if (env && *env)
		h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen(SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = open_beside();
	if (!h) {
		snprintf(api.why, sizeof api.why, "%s", dlerror());
		return;
	}
	*(void **)&api.open = dlsym(h, "pm_image_open");
	*(void **)&api.close = dlsym(h, "pm_image_close");
	*(void **)&api.source = dlsym(h, "pm_image_source");
	*(void **)&api.region = dlsym(h, "pm_image_region");
	*(void **)&api.info = dlsym(h, "pm_image_info");
	*(void **)&api.error = dlsym(h, "pm_image_error");
	*(void **)&api.strerror = dlsym(h, "pm_image_strerror");
	*(void **)&api.matrix_read = dlsym(h, "pm_image_matrix_read");
	if (!api.open || !api.close || !api.source || !api.region || !api.info || !api.error ||
	    !api.strerror || !api.matrix_read) {
		snprintf(api.why, sizeof api.why, "%s lacks a function of patchmap-image.h",
			 SONAME);
		return;
	}
	api_ok = true;
}

static int release(void *handle)
{
	return api.close(handle);
}

int img_open_vips(const char *path, const struct img_vips *v, struct img *im, char *err)
{
	struct pm_image_opts o = { .size = sizeof o };
	struct pm_image_info info;
	struct stat st;
	pm_image *pi;
	char msg[IMG_ERRLEN];
	size_t n;

	memset(im, 0, sizeof(*im));
	pthread_once(&api_once, load);
	if (!api_ok) {
		snprintf(err, IMG_ERRLEN, "unknown image format (not .npy, PGM or PPM; "
			 "libpatchmap-image, which reads libvips' formats, cannot be loaded: %.200s)",
			 api.why);
		return IMG_EFORMAT;
	}
	o.page = v->page;
	o.level = v->level;
	o.bands = v->nbands ? v->bands : NULL;
	o.nbands = v->nbands;
	o.lazy.budget = v->budget;
	o.lazy.chunk = v->chunk;
	int e = api.open(path, &o, &pi, msg, sizeof msg);

	if (e == -PM_IMAGE_EFORMAT) {
		snprintf(err, IMG_ERRLEN, "unknown image format (not .npy, PGM or PPM, nor one "
			 "libvips reads here)");
		return IMG_EFORMAT;
	}
	if (e) {
		snprintf(err, IMG_ERRLEN, "%s", msg);
		return -1;
	}
	api.info(pi, &info);
	im->src = *api.source(pi);
	im->src.has_channels = false;
	im->src.channel_axis = 0;
	im->layout = "C";
	im->file_bytes = stat(path, &st) ? 0 : (size_t)st.st_size;
	im->vips_open = true;
	snprintf(im->vips.loader, sizeof im->vips.loader, "%s", info.loader);
	im->vips.pages = info.pages;
	im->vips.levels = info.levels;
	im->vips.page = info.page;
	im->vips.level = info.level;
	im->vips.file_bands = info.file_bands;
	im->vips.random_access = info.random_access;
	/* the format as libvips names its loader, less "load" */
	n = strlen(info.loader);
	if (n > 4 && !strcmp(info.loader + n - 4, "load"))
		n -= 4;
	snprintf(im->format_buf, sizeof im->format_buf, "%.*s", (int)n, info.loader);
	im->format = im->format_buf;
	im->handle = pi;
	im->release = release;
	return 0;
}

int img_vips_error(const struct img *im, char *msg, size_t msglen)
{
	if (msg && msglen)
		msg[0] = '\0';
	if (!im->vips_open)
		return 0;
	return api.error(im->handle, msg, msglen);
}

int img_matrix_read(const struct img *im, const pm_matrix *m, size_t offset, void *dst,
		    size_t len)
{
	if (!im->vips_open)
		return pm_matrix_read(m, offset, dst, len);
	return api.matrix_read(m, offset, dst, len);
}

int img_vips_failed(const struct img *im)
{
	if (!im->vips_open)
		return 0;
	return pm_region_error(api.region(im->handle));
}

/* True for a file img_open() reads (or refuses) by its magic: .npy, netpbm. */
static bool own_format(const char *path)
{
	unsigned char b[6] = { 0 };
	struct stat st;
	ssize_t n;
	int fd;

	/* not a regular file: img_open reads pipes and refuses devices. A
	 * pipe is not opened here: a named one loses its writer's bytes when
	 * its only reader closes it */
	if (stat(path, &st) || !S_ISREG(st.st_mode))
		return true; /* (or img_open says why not) */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return true;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { /* replaced meanwhile */
		close(fd);
		return true;
	}
	n = read(fd, b, sizeof b);
	close(fd);
	/* empty or too short for any image, .npy (a damaged one too) and
	 * netpbm (img_open reads P5 and P6 and says why not the others) */
	if (n < (ssize_t)sizeof b || b[0] == 0x93)
		return true;
	return b[0] == 'P' && b[1] >= '1' && b[1] <= '7' &&
	       (b[2] == ' ' || b[2] == '\t' || b[2] == '\n' || b[2] == '\r' || b[2] == '#');
}

bool fe_image_is_vips(const char *path, const struct fe_options *f)
{
	return !f->raw_given[FE_SHAPE] && !own_format(path);
}

int fe_image_open(const char *path, const struct fe_options *f, struct img *im, char *err)
{
	int k = -1;

	for (int i = FE_PAGE; i <= FE_IMAGE_CHUNK && k < 0; i++)
		if (f->raw_given[i])
			k = i;

	if (f->raw_given[FE_SHAPE] || own_format(path)) {
		int ret = img_open(path, &f->raw, im, err);

		if (ret)
			return ret;
		if (k >= 0 && !f->raw_given[FE_SHAPE]) {
			snprintf(err, IMG_ERRLEN, "%s: only for an image file libvips reads, not a %s "
				 "file",
				 fe_raw_key_name(k), !strcmp(im->format, "npy") ? ".npy" : "PGM/PPM");
			img_close(im);
			return -1;
		}
		return 0;
	}
	return img_open_vips(path, &f->vips, im, err);
}
