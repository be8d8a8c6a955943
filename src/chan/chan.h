/* chan — a byte channel behind one ops table, the transports that make channels from a URI, and
 * URI parsing.
 *
 * A channel is one connection or one open file: a stream socket (tcp, unix, or an inherited fd),
 * or a seekable file (positional I/O only).  TLS will be another backend wrapping a socket.
 * Every transfer goes through core/io's full-transfer loop via mfd__chan_readv/writev (or the
 * positional variants); nothing above this layer touches a channel's descriptor: timeouts,
 * readiness, the failure path's non-blocking send, file syncs and mappings are operations here.
 *
 * Threads: a channel is used by one reading and one writing thread at a time (its owner);
 * shutdown() and the byte counters may be used from any thread. */
#ifndef MFD_CHAN_H
#define MFD_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "multifd.h"

struct mfd__chan;

struct mfd__chan_ops {
	const char *name;
	/* One attempt, readv/writev-like (off < 0 for streams); -1 with errno on failure. */
	ssize_t (*readv)(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off);
	ssize_t (*writev)(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off);
	/* One attempt that never blocks: moves what the transport takes now.  Bytes written, or
	 * -1 with errno (EAGAIN when it takes nothing).  NULL: the channel cannot do it. */
	ssize_t (*try_writev)(struct mfd__chan *c, const struct iovec *iov, int iovcnt);
	/* The same for reads: bytes read (0: end of stream), or -1 with errno (EAGAIN: none). */
	ssize_t (*try_read)(struct mfd__chan *c, void *buf, size_t len);
	/* Bytes received and buffered inside the channel, readable without touching the
	 * transport (a TLS channel decrypts whole records).  NULL: nothing is ever buffered. */
	size_t (*pending)(struct mfd__chan *c);
	/* Wait until a read would make progress (pending bytes count), timeout_ms (0 = no limit)
	 * or cancel_fd (when >= 0) readable.  0, -ETIMEDOUT, MFD_ECANCELED or -errno. */
	int (*wait_readable)(struct mfd__chan *c, int timeout_ms, int cancel_fd);
	/* Apply c->idle_ms and c->stall_ms (just stored by mfd__chan_set_timeout) to the
	 * transport: wake blocked transfers often enough to enforce them.  NULL: nothing to do
	 * (transfers never block for long).  0 or -errno. */
	int (*set_timeout)(struct mfd__chan *c);
	void (*shutdown)(struct mfd__chan *c);	/* thread-safe, idempotent */
	void (*close)(struct mfd__chan *c);	/* releases the descriptor; the caller frees */
};

/* Test hook: called before every transfer attempt on every channel; may sleep (to reorder
 * channels) or return a negative errno to inject a failure.  Set before sessions start. */
typedef int (*mfd__chan_hook_fn)(void *ctx, int chan_id, bool writing, size_t len);

/* One direction of a channel: the transfer under way, for the timing rules of
 * mfd__chan_set_timeout.  Owned by the one thread transferring in that direction. */
struct mfd__chan_dir {
	uint64_t begin_ns;	/* when the transfer began */
	uint64_t window_ns;	/* start of the current progress window; 0: a read that still
				 * waits for its first byte */
	uint64_t window_bytes;	/* moved in the window */
	uint64_t need;		/* what the window must move: min(64 KiB, what was left) */
	uint64_t left;		/* bytes the transfer has still to move */
};

struct mfd__chan {
	const struct mfd__chan_ops *ops;
	int fd;			/* backend-private: set at creation, closed by ops->close */
	int id;			/* channel index within the session: 0 main, 1.. data */
	mfd__chan_hook_fn hook;	/* set before use, then read-only */
	void *hook_ctx;
	uint64_t bytes_in;	/* atomic (stats only) */
	uint64_t bytes_out;	/* atomic (stats only) */
	uint64_t packets_in;	/* atomic (stats only): counted by proto/frame */
	uint64_t packets_out;	/* atomic (stats only) */
	int idle_ms;		/* atomic: set by mfd__chan_set_timeout, read by transfers */
	int stall_ms;		/* atomic: likewise */
	struct mfd__chan_dir rx;	/* the reading thread's */
	struct mfd__chan_dir tx;	/* the writing thread's */
};

/* Full transfers (see core/io.h for return codes). */
int mfd__chan_readv(struct mfd__chan *c, struct iovec *iov, int iovcnt);
int mfd__chan_writev(struct mfd__chan *c, struct iovec *iov, int iovcnt);
int mfd__chan_read(struct mfd__chan *c, void *buf, size_t len);
int mfd__chan_write(struct mfd__chan *c, const void *buf, size_t len);
/* Best effort, never blocking: as much of iov as the channel takes now (all, part, or nothing).
 * Returns the bytes written or a negative code. */
ssize_t mfd__chan_try_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt);
/* Never blocking: the bytes there are now, up to len.  Bytes read, 0 at the end of the stream,
 * -EAGAIN when none is there, or a negative code. */
ssize_t mfd__chan_try_read(struct mfd__chan *c, void *buf, size_t len);
/* A read that continues a unit begun by an earlier read (a packet's meta after its header):
 * it waits for its first byte under the stall rule, not the idle one. */
int mfd__chan_readv_more(struct mfd__chan *c, struct iovec *iov, int iovcnt);
int mfd__chan_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd);
/* Bound the blocking transfers that follow (ms; 0 = no bound): a read waits at most idle_ms for
 * its first byte; from then on, and a write from its start, the transfer must move
 * min(64 KiB, what is left of it) in every stall_ms, so that a peer gone silent, a black-holed
 * link and a peer trickling a byte at a time are all found within stall_ms.  A transfer that
 * breaks a rule fails with -ETIMEDOUT.  May be called while another thread transfers on the
 * channel: it applies from that transfer's next wait.  On TCP it also sets TCP_USER_TIMEOUT,
 * so that data the peer never acknowledges (a link gone down) fails the connection.  0 or
 * -errno. */
int mfd__chan_set_timeout(struct mfd__chan *c, int idle_ms, int stall_ms);
/* For backends: how long a blocked transfer in direction d may still wait (ms; -1: no limit),
 * 0 once it broke a rule; and the accounting of n bytes moved. */
int mfd__chan_dir_budget(const struct mfd__chan *c, const struct mfd__chan_dir *d);
void mfd__chan_dir_moved(struct mfd__chan_dir *d, size_t n);
void mfd__chan_shutdown(struct mfd__chan *c);	/* NULL is fine */
void mfd__chan_free(struct mfd__chan *c);	/* close + free; NULL is fine */

/* Wrap a connected stream socket or pipe-like fd; takes ownership of fd.  NULL on ENOMEM
 * (the fd is closed then). */
struct mfd__chan *mfd__chan_sock_new(int fd, int id);

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
/* Close the descriptors of an fd: URI from index `from` on (those nobody took over). */
void mfd__uri_close_fds(const struct mfd__uri *u, int from);

/* ---- stream transports: channels from a URI (transport.c) ---------------------------------- */

/* Outgoing channel `id` of `count` (main first): connected to u's address (tcp, unix) within
 * timeout_ms (0 = no limit; cancel_fd, when >= 0, aborts the wait), or the id-th descriptor of
 * an fd: URI (which must list exactly `count`; the channel owns it).  A file: URI is refused.
 * Returns 0 with *out set, or a negative code with the reason in err. */
int mfd__chan_connect(const struct mfd__uri *u, unsigned id, unsigned count, int timeout_ms,
		      int cancel_fd, struct mfd__chan **out, struct mfd_error *err);

/* Incoming: where channels come from.  A listening socket (tcp, unix, or fd:N of a listening
 * socket), or fd:A,B,... of sockets already connected (one per channel, in any order). */
struct mfd__listener;
int mfd__listener_open(const struct mfd__uri *u, struct mfd__listener **out, struct mfd_error *err);
/* The next connection (channel id -1 until its hello says which it is): accepted within
 * timeout_ms (0 = no limit) or until cancel_fd is readable (MFD_ECANCELED), or the next passed
 * descriptor (MFD_ECHANCOUNT once none is left). */
int mfd__listener_accept(struct mfd__listener *l, int timeout_ms, int cancel_fd,
			 struct mfd__chan **out, struct mfd_error *err);
/* Passed descriptors not yet handed out (0 for a listening socket). */
int mfd__listener_remaining(const struct mfd__listener *l);
#define MFD_LISTENER_MAX_WAIT 256	/* channels one mfd__listener_wait watches at most */
/* Does this listener hand out only descriptors passed at listen time (fd:A,B,...)?  Then no
 * other connection can ever come. */
bool mfd__listener_passed(const struct mfd__listener *l);
/* Never blocking: the next connection if one is waiting (or the next passed descriptor), else
 * -EAGAIN (MFD_ECHANCOUNT when no passed descriptor is left). */
int mfd__listener_try_accept(struct mfd__listener *l, struct mfd__chan **out, struct mfd_error *err);
/* Wait until the listener has a connection (or passed descriptors remain), or one of the n
 * channels has bytes to read, or timeout_ms passes (-1: no limit), or cancel_fd (when >= 0) is
 * readable.  *accept_ready and ready[0..n) say which.  0, -ETIMEDOUT, MFD_ECANCELED, -errno. */
int mfd__listener_wait(struct mfd__listener *l, struct mfd__chan *const *cs, int n, int timeout_ms,
		       int cancel_fd, bool *accept_ready, bool *ready);
/* The address listened on, as a URI (tcp port resolved).  0, -ENOSPC or MFD_ESTATE. */
int mfd__listener_local_uri(const struct mfd__listener *l, char *buf, size_t len);
void mfd__listener_free(struct mfd__listener *l);	/* closes, unlinks its unix socket */

/* ---- sockets (sock.c) ------------------------------------------------------------------- */
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
/* TCP_NODELAY on a TCP socket. */
void mfd__sock_tune(int fd, int family);
/* Is fd a listening socket? */
bool mfd__sock_is_listening(int fd);
/* Wait until fd is readable, timeout_ms or cancel_fd; 0, -ETIMEDOUT or MFD_ECANCELED. */
int mfd__wait_readable(int fd, int timeout_ms, int cancel_fd);

/* ---- files (file.c) ------------------------------------------------------------------------ */
/* File channels move data only with the positional calls below; shutdown is a no-op (a local
 * transfer always ends, and the callers check for cancel between transfers). */

/* Wrap a seekable file; takes ownership of fd (closed on ENOMEM too). */
struct mfd__chan *mfd__chan_file_new(int fd, int id);
/* Open path (flags | O_CLOEXEC, mode for O_CREAT) as channel id.  0 or a negative code. */
int mfd__chan_file_open(const char *path, int flags, int id, struct mfd__chan **out,
			struct mfd_error *err);
/* Create a new file from a template ending in XXXXXX (replaced in place), exclusively locked
 * (flock) for as long as the channel lives, and locked before its name exists where the file
 * system has O_TMPFILE. */
int mfd__chan_file_create_temp(char *tmpl, int id, struct mfd__chan **out, struct mfd_error *err);
/* Remove leftovers beside path: files named <basename of path><suffix>..., ours (same user),
 * regular, that no live process holds locked (their writer died).  *removed: how many. */
int mfd__file_remove_stale(const char *path, const char *suffix, unsigned *removed,
			   struct mfd_error *err);
/* A descriptor an embedder passed: check it is an open regular file with the access it needs
 * (MFD_FILE_NEED_*), then wrap it.  The channel owns fd from the call on, whatever happens.
 * which: "snapshot", "direct" (for messages). */
#define MFD_FILE_NEED_READ 0x1u
#define MFD_FILE_NEED_WRITE 0x2u
#define MFD_FILE_NEED_DIRECT 0x4u
int mfd__chan_file_adopt(int fd, unsigned need, const char *which, int id, struct mfd__chan **out,
			 struct mfd_error *err);
/* Do two file channels refer to the same file? */
bool mfd__chan_file_same(struct mfd__chan *a, struct mfd__chan *b);
/* A new channel on the same file: path opened again as its own open file description (with
 * `flags`; -ESTALE if path now names another file), or with path NULL, the same open file
 * description duplicated (positional I/O shares nothing else). */
int mfd__chan_file_reopen(struct mfd__chan *c, const char *path, int flags, int id,
			  struct mfd__chan **out, struct mfd_error *err);
/* Positional full transfers (see core/io.h for return codes). */
int mfd__chan_preadv(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off);
int mfd__chan_pwritev(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off);
/* Make [off, off + len) of a file channel read as zero without growing the file's allocation:
 * punch a hole (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), or write zeros where the file
 * system cannot.  off and len multiples of 4096 (O_DIRECT safe).  0 or -errno. */
int mfd__chan_file_zero(struct mfd__chan *c, int64_t off, int64_t len);
int mfd__chan_file_sync(struct mfd__chan *c, bool data_only);	/* fdatasync / fsync */
/* The file's size; -EINVAL when the channel is not on a regular file. */
int mfd__chan_file_size(struct mfd__chan *c, uint64_t *size);
int mfd__chan_file_truncate(struct mfd__chan *c, uint64_t len);
/* Map [off, off + len) of the file privately at addr (MAP_PRIVATE | MAP_FIXED, read-write;
 * writes go to private copies).  0 or -errno. */
int mfd__chan_file_map(struct mfd__chan *c, void *addr, size_t len, uint64_t off);
/* fsync the directory holding path (the rename of a file into it becomes durable).  File
 * systems that refuse fsync on a directory are accepted as they are. */
int mfd__file_sync_dir(const char *path, struct mfd_error *err);

#endif
