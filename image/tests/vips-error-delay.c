/* vips-error-delay.c: LD_PRELOAD module for the image tests. A thread that
 * takes libvips' pending error text (vips_error_buffer_copy returns a
 * non-empty string) sleeps 100 ms when it frees that string. Between the
 * two, the fill that took the decoder's words has not yet kept them, and
 * the fills of other threads, which find the text gone, run: the
 * interleaving that, unforced, is rare. With PM_DELAY_FAILED_PREPARE set,
 * a thread whose outermost vips_region_prepare failed sleeps 300 ms before
 * it returns: its fill is still in libvips while others take the text. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

typedef struct _VipsRegion VipsRegion;
typedef struct _VipsRect VipsRect;

static char *(*real_copy)(void);
static void (*real_free)(void *);
static int (*real_prepare)(VipsRegion *, const VipsRect *);
static bool delay_prepare;
static _Thread_local void *taken;
static _Thread_local int depth;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* looked up on first use, which may come before this module's constructors */
static void find_real(void)
{
	*(void **)&real_copy = dlsym(RTLD_NEXT, "vips_error_buffer_copy");
	*(void **)&real_free = dlsym(RTLD_NEXT, "g_free");
	*(void **)&real_prepare = dlsym(RTLD_NEXT, "vips_region_prepare");
	delay_prepare = getenv("PM_DELAY_FAILED_PREPARE") != NULL;
}

char *vips_error_buffer_copy(void)
{
	char *text;

	pthread_once(&once, find_real);
	text = real_copy();
	if (text && *text)
		taken = text;
	return text;
}

void g_free(void *p)
{
	pthread_once(&once, find_real);
	if (p && p == taken) {
		taken = NULL;
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	}
	real_free(p);
}

int vips_region_prepare(VipsRegion *reg, const VipsRect *r)
{
	int ret;

	pthread_once(&once, find_real);
	depth++;
	ret = real_prepare(reg, r);
	depth--;
	if (ret && !depth && delay_prepare)
		nanosleep(&(struct timespec){ .tv_nsec = 300 * 1000 * 1000 }, NULL);
	return ret;
}
