/* outfile.h: output files that never destroy data. A file is written under
 * a temporary name beside its destination and renamed into place only when
 * complete, so a failure, a full disk or Ctrl-C leaves the old file (or
 * nothing) behind. An output that is one of the command's inputs, or an
 * existing file the user may not write or that nobody may write (mode 0444,
 * also for root), is refused before anything is written. Messages name the user's path, never the temporary. */
#ifndef PM_COMMON_OUTFILE_H
#define PM_COMMON_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any message these functions write. */
#define OUT_ERRLEN 1024

/* A file the output must not be: "the image", "the filters file", ... */
struct out_input {
	const char *path;
	const char *what;
};

struct outfile {
	int fd;
	bool direct;       /* no temporary: a device, a pipe, a descriptor */
	bool seekable;     /* written with pwrite at base + offset */
	uint64_t base;     /* a seekable direct output's offset at the start */
	uint64_t size;     /* bytes the caller will write */
	uint64_t pos;      /* next offset, for unseekable outputs */
	const char *path;  /* as given */
	char *dest;        /* the file replaced: path with its symlinks resolved */
	char *tmp;         /* the temporary's path, NULL when direct */
	int slot;          /* which temporary a signal removes, or -1 */
};

/* The descriptor of this process that path names, written in place as
 * it stands: 1 for "-", N for a name that leads through /proc/PID/fd
 * (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N). -1 for any
 * other path. */
int out_fd(const char *path);

/* True when a and b name the same file: the same device and inode when both
 * exist (through any symlink or hard link), else the same resolved path
 * (two outputs not yet created). A descriptor's name (out_fd) is its file. */
bool out_same_file(const char *a, const char *b);

/* The checks of out_open() alone, for a command that writes several files
 * and must refuse before it writes the first: path is none of inputs[0,
 * n), and if it exists it can be opened for writing. 0, or -1 with the
 * message in err (OUT_ERRLEN bytes). */
int out_check(const char *path, const struct out_input *inputs, int n, char *err);

/* Opens path for writing `size` bytes after out_check(). A regular file (or
 * a path that does not exist yet) is written under a temporary name in the
 * directory of the file it will replace (a symlink is written through: its
 * target is replaced), with the replaced file's permissions or 0666 less
 * the umask, its space reserved where the file system can (a full disk
 * fails at once). The temporary is removed by out_abort(), and on SIGINT,
 * SIGTERM and SIGHUP (two outputs at a time per process). A descriptor's
 * name (out_fd), a device or a pipe is written directly, from where its
 * descriptor stands. 0, or -1 with the message in err. */
int out_open(struct outfile *o, const char *path, uint64_t size, const struct out_input *inputs,
	     int n, char *err);
/* Writes len bytes at offset off (in order, for an unseekable output).
 * Thread-safe for a seekable output. 0, or -errno. */
int out_pwrite(struct outfile *o, const void *buf, size_t len, uint64_t off);
/* Closes the file, the temporary staying for out_commit(): a command that
 * writes two files closes both, so that a failure of either (a late
 * ENOSPC or EIO from close) keeps both old files. 0, or -1 with the
 * message in err (the temporary is then removed). */
int out_close(struct outfile *o, char *err);
/* Closes the file (if out_close() did not) and renames it into place. 0,
 * or -1 with the message in err (the temporary is then removed). */
int out_commit(struct outfile *o, char *err);
/* out_commit() of two files, both or neither: if b cannot be renamed into
 * place, the old a comes back (or the new a goes, where there was none).
 * Signals wait until both are in place or neither. On a file system that
 * cannot exchange two names a is renamed as out_commit() does, and a
 * failure of b leaves the new a. 0, or -1 with the message in err (both
 * temporaries then removed). A signal that comes meanwhile waits: after
 * a success it is acted on before the return; after a failure signals
 * keep waiting, and the caller must call out_deliver_deferred() once it
 * has said why. */
int out_commit_pair(struct outfile *a, struct outfile *b, char *err);
/* After a failed out_commit_pair(), once the caller has said why: acts on
 * a signal that came meanwhile (removes what is left and ends the process
 * as the signal would), else puts the signal handlers back and returns. */
void out_deliver_deferred(void);
/* Closes and removes the temporary; the destination is untouched. */
void out_abort(struct outfile *o);
/* Installs handler for each of sigs[0..n) that the process does not ignore,
 * keeping the actions there before in old[] (for out_pass_signal). */
struct sigaction;
void out_catch_signals(const int *sigs, struct sigaction *old, int n, void (*handler)(int));
/* For a cleanup signal handler, after its own cleanup: runs the handler
 * that was there before (old[i] for sigs[i] == sig, a cleanup of its own),
 * then the default action, which ends the process. Async-signal-safe. */
void out_pass_signal(int sig, const int *sigs, const struct sigaction *old, int n);
/* Removes the temporary of the output being written, if any, from a thread
 * that cannot reach its outfile (the process is about to end, as on
 * SIGTERM). */
void out_remove_pending(void);

#endif
