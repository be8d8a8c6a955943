/* chan — a byte channel behind one ops table, and URI parsing.
 *
 * A channel is one connection (socket or inherited fd; later file and TLS).  Every transfer on
 * it goes through core/io's full-transfer loop via mfd__chan_readv/writev.  shutdown() may be
 * called from any thread to make blocked transfers on the channel fail at once (cancel). */
#ifndef MFD_CHAN_H
#define MFD_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "multifd.h"

struct mfd__chan;

struct mfd__chan_ops {
	const char *name;
	/* One attempt, readv/writev-like (off < 0 for streams); -1 with errno on failure. */
	ssize_t (*readv)(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off);
	ssize_t (*writev)(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off);
	void (*shutdown)(struct mfd__chan *c);	/* thread-safe, idempotent */
	void (*close)(struct mfd__chan *c);	/* releases the fd; the struct is freed by the caller */
};

/* Test hook: called before every transfer attempt on every channel; may sleep (to reorder
 * channels) or return a negative errno to inject a failure.  Set before sessions start. */
typedef int (*mfd__chan_hook_fn)(void *ctx, int chan_id, bool writing, size_t len);

struct mfd__chan {
	const struct mfd__chan_ops *ops;
	int fd;			/* set at creation, then read-only (closed by ops->close) */
	int id;			/* channel index within the session: 0 main, 1.. data */
	mfd__chan_hook_fn hook;	/* set before use, then read-only */
	void *hook_ctx;
	uint64_t bytes_in;	/* atomic (stats only) */
	uint64_t bytes_out;	/* atomic (stats only) */
};

/* Full transfers (see core/io.h for return codes). */
int mfd__chan_readv(struct mfd__chan *c, struct iovec *iov, int iovcnt);
int mfd__chan_writev(struct mfd__chan *c, struct iovec *iov, int iovcnt);
int mfd__chan_read(struct mfd__chan *c, void *buf, size_t len);
int mfd__chan_write(struct mfd__chan *c, const void *buf, size_t len);
void mfd__chan_shutdown(struct mfd__chan *c);
void mfd__chan_free(struct mfd__chan *c);	/* close + free; NULL is fine */

/* Wrap a connected stream socket or pipe-like fd; takes ownership of fd.  NULL on ENOMEM
 * (the fd is closed then). */
struct mfd__chan *mfd__chan_sock_new(int fd, int id);

/* ---- files (file.c) ------------------------------------------------------------------------ */
/* Wrap a seekable file; takes ownership of fd (closed on ENOMEM too).  File channels move data
 * only with the positional calls below; shutdown is a no-op (a local transfer always ends, and
 * the callers check for cancel between transfers). */
struct mfd__chan *mfd__chan_file_new(int fd, int id);
/* Positional full transfers (see core/io.h for return codes). */
int mfd__chan_preadv(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off);
int mfd__chan_pwritev(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off);
/* Make [off, off + len) of a file channel read as zero without growing the file's allocation:
 * punch a hole (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), or write zeros where the file
 * system cannot.  off and len multiples of 4096 (O_DIRECT safe).  0 or -errno. */
int mfd__chan_file_zero(struct mfd__chan *c, int64_t off, int64_t len);
/* Open path again as a new open file description with `flags` (O_CLOEXEC added), and check that
 * it is the same file as fd (-ESTALE otherwise).  Returns the fd or a negative code. */
int mfd__file_reopen(const char *path, int fd, int flags, struct mfd_error *err);

/* ---- URIs -------------------------------------------------------------------------------- */
enum mfd__uri_kind { MFD_URI_TCP = 1, MFD_URI_UNIX, MFD_URI_FD, MFD_URI_FILE };

#define MFD_URI_PATH_MAX 4096
struct mfd__uri {
	enum mfd__uri_kind kind;
	char host[256];		/* tcp: host name or address, brackets removed */
	char port[16];		/* tcp */
	char path[MFD_URI_PATH_MAX];	/* unix, file */
	int fds[MFD_MAX_CHANNELS + 1];	/* fd: the listed descriptors */
	int nfds;
};

/* Parse tcp:HOST:PORT, tcp:[V6]:PORT, unix:PATH, fd:N[,N...], file:PATH.
 * Returns 0 or MFD_EURI with a message in err. */
int mfd__uri_parse(const char *s, struct mfd__uri *u, struct mfd_error *err);

/* ---- sockets ----------------------------------------------------------------------------- */
/* Connect a stream socket to u (tcp or unix) within timeout_ms (0 = no limit).  cancel_fd, if
 * >= 0, aborts the wait when readable.  Returns the fd or a negative code. */
int mfd__sock_connect(const struct mfd__uri *u, int timeout_ms, int cancel_fd, struct mfd_error *err);
/* Bind and listen on u (tcp or unix).  Returns the listening fd or a negative code. */
int mfd__sock_listen(const struct mfd__uri *u, int backlog, struct mfd_error *err);
/* Accept one connection, waiting up to timeout_ms (0 = no limit), or until cancel_fd is
 * readable (MFD_ECANCELED).  Returns the fd or a negative code (-ETIMEDOUT). */
int mfd__sock_accept(int lfd, int timeout_ms, int cancel_fd, struct mfd_error *err);
/* Format the local address of lfd as a URI. */
int mfd__sock_local_uri(int lfd, char *buf, size_t len);
/* Is fd a listening socket? */
bool mfd__sock_is_listening(int fd);
/* Wait until fd is readable, timeout_ms or cancel_fd; 0, -ETIMEDOUT or MFD_ECANCELED. */
int mfd__wait_readable(int fd, int timeout_ms, int cancel_fd);

#endif
