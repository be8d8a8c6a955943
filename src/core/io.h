/* core/io — full-transfer helpers.
 *
 * Every socket and file transfer in multifd goes through mfd__io_full(): it repeats a readv-like
 * operation until every byte of the iovec array has moved, resuming *inside* a partly transferred
 * entry (the classic `*_in_full` loops lose track there), retrying EINTR, and splitting arrays
 * longer than IOV_MAX.  Positional operations advance their offset by what each call moved.
 */
#ifndef MFD_CORE_IO_H
#define MFD_CORE_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* One transfer attempt: like readv/writev (off < 0) or preadv/pwritev (off >= 0).
 * Returns bytes moved (0 = end of stream when reading), or -1 with errno set. */
typedef ssize_t (*mfd__io_op)(void *ctx, const struct iovec *iov, int iovcnt, int64_t off);

/* Move every byte of iov[0..iovcnt).  iov is consumed in place (its entries are advanced), so
 * the caller must not reuse it.  off: stream when < 0, else the starting file offset.
 * reading: selects the end-of-stream meaning.  *done (may be NULL) gets the bytes moved.
 * Returns 0, or MFD_ECLOSED (end of stream before the first byte), MFD_ETRUNC (end of stream
 * after some bytes), -EIO (a write that moved nothing), or the -errno of the failing call. */
int mfd__io_full(mfd__io_op op, void *ctx, struct iovec *iov, int iovcnt, int64_t off, bool reading,
		 size_t *done);

/* The plain fd operations, usable as mfd__io_op with ctx = (void *)(intptr_t)fd.
 * Writes use sendmsg(MSG_NOSIGNAL) on sockets so a vanished peer is EPIPE, never SIGPIPE. */
ssize_t mfd__io_fd_read(void *ctx, const struct iovec *iov, int iovcnt, int64_t off);
ssize_t mfd__io_fd_write(void *ctx, const struct iovec *iov, int iovcnt, int64_t off);

/* Conveniences on an fd. */
int mfd__io_readv_fd(int fd, struct iovec *iov, int iovcnt);
int mfd__io_writev_fd(int fd, struct iovec *iov, int iovcnt);
int mfd__io_preadv_fd(int fd, struct iovec *iov, int iovcnt, int64_t off);
int mfd__io_pwritev_fd(int fd, struct iovec *iov, int iovcnt, int64_t off);
int mfd__io_read_fd(int fd, void *buf, size_t len);
int mfd__io_write_fd(int fd, const void *buf, size_t len);

#endif
