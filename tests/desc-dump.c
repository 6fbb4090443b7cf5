/* desc-dump.c: a descriptor as the preload shim reads it, printed as the
 * tool's `info --json` prints its options: {"options": {...}, "matrix":
 * {...}}, or {"error": "...", "line": N} (exit 1). The source is opened as
 * the shim opens it, relative to the descriptor's directory. For
 * test_grammar.py, which compares the front ends. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor.h"
#include "image.h"
#include "json.h"
#include "options.h"

static int report_error(const char *msg, int line)
{
	struct json j;

	json_begin(&j, stdout);
	json_str(&j, "error", msg);
	json_i64(&j, "line", line);
	json_end(&j);
	return 1;
}

int main(int argc, char **argv)
{
	char err[DESC_ERRLEN], ierr[IMG_ERRLEN], *text, *path, *slash;
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	struct fe_rows sel = { 0 };
	char *dir;
	struct desc d;
	struct img im;
	struct json j;
	long len;
	int line, ret = 0;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: desc-dump FILE.patchmap\n");
		return 2;
	}
	f = fopen(argv[1], "rb");
	if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
	    !(text = malloc((size_t)len + 1)) || fread(text, 1, (size_t)len, f) != (size_t)len) {
		perror(argv[1]);
		return 2;
	}
	fclose(f);
	int bad = desc_parse(text, (size_t)len, &d, err, &line);
	free(text);
	if (bad) {
		desc_free(&d);
		return report_error(err, line);
	}
	slash = strrchr(argv[1], '/');
	if (d.source[0] == '/' || !slash)
		path = strdup(d.source);
	else if (asprintf(&path, "%.*s/%s", (int)(slash - argv[1]), argv[1], d.source) < 0)
		path = NULL;
	if (!path || (ret = fe_image_open(path, &d.opt, &im, ierr))) {
		int k = path ? fe_raw_key_of_message(&d.opt, ierr) : -1;
		bool oom = !path;

		free(path);
		if (k >= FE_PAGE) {
			/* a page, level or band the image lacks: on that key's line */
			line = d.line[DK_RAW + k];
			desc_free(&d);
			return report_error(ierr, line);
		}
		fprintf(stderr, "desc-dump: source \"%s\": %s\n", d.source,
			oom ? "out of memory" : ret == IMG_EFORMAT ? DESC_UNKNOWN_FORMAT : ierr);
		desc_free(&d);
		return 2;
	}
	free(path);
	dir = slash ? strndup(argv[1], (size_t)(slash - argv[1])) : NULL;
	if (desc_matrix(&d, &im.src, &o, &info, err, &line) ||
	    desc_rows(&d, dir, &o, &sel, &info, err, &line)) {
		free(dir);
		img_close(&im);
		desc_free(&d);
		return report_error(err, line);
	}
	free(dir);
	json_begin(&j, stdout);
	fe_report_options(&j, &o, &info);
	fe_report_matrix(&j, &info);
	fe_report_rows(&j, &sel);
	json_end(&j);
	fe_rows_free(&sel);
	img_close(&im);
	desc_free(&d);
	return 0;
}
