/* json.h: a small streaming JSON writer for the front ends' reports: one
 * object, members written in order, strings always valid UTF-8. Not
 * thread-safe: one writer per object. */
#ifndef PM_COMMON_JSON_H
#define PM_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct json {
	FILE *f;
	int depth;
	bool first[16];
};

/* Opens the top-level object on f; json_end() closes it with a newline. */
void json_begin(struct json *j, FILE *f);
void json_end(struct json *j);
/* Members: key is NULL inside an array. */
void json_obj(struct json *j, const char *key);  /* opens a nested object */
void json_arr(struct json *j, const char *key);  /* opens an array */
void json_close(struct json *j, char bracket);   /* '}' or ']' */
void json_str(struct json *j, const char *key, const char *v); /* NULL: null */
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_num(struct json *j, const char *key, double v);      /* not finite: null */
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);
/* An array of sizes, "shape": [3, 4]. */
void json_dims(struct json *j, const char *key, const size_t *v, int n);

/* Writes v as a JSON string on f: bytes that are not UTF-8 (a file name may
 * hold any) become U+FFFD. NULL writes null. */
void json_put_string(FILE *f, const char *v);

#endif
