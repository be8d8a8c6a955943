/* payload/codec — the codec stage between a payload and the channel: a per-worker ops table that
 * encodes a batch's data before the framing sends it and decodes it on the way in.
 *
 * The hello's codec byte names the codec of a session; a destination refuses one it does not
 * have.  `none` is the only entry for now: it sends the page data as it stands, zero copy, and
 * reads it straight into destination memory.  A compressing codec (zlib, zstd, lz4) is another
 * entry with its own per-worker buffers; the payloads and the workers do not change.
 *
 * Threads: a codec instance belongs to one worker (worker-private). */
#ifndef MFD_PAYLOAD_CODEC_H
#define MFD_PAYLOAD_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "multifd.h"

struct mfd__chan;
struct mfd__codec;

struct mfd__codec_ops {
	const char *name;
	uint8_t id;		/* the hello's codec byte */
	/* A worker's instance, for batches of up to max_raw bytes.  0 or a negative code. */
	int (*create)(struct mfd__codec **out, size_t max_raw);
	/* Source: encode the raw data in[0..nin).  On return *out (nout entries, *len bytes) is
	 * what to send: `in` itself, or the codec's own buffers (valid until the next call).
	 * Both `in` and *out have MFD_FRAME_IOV_HEAD free entries before them (the framing puts
	 * the header and meta there).  0 or a negative code. */
	int (*encode)(struct mfd__codec *c, struct iovec *in, int nin, struct iovec **out, int *nout,
		      uint32_t *len);
	/* Destination: read `len` encoded bytes from ch and decode them into dst[0..ndst) (the
	 * raw size).  Encoded data that does not decode to exactly that is MFD_ELENGTH.  0 or a
	 * negative code with the details in err. */
	int (*decode)(struct mfd__codec *c, struct mfd__chan *ch, uint32_t len, struct iovec *dst,
		      int ndst, struct mfd_error *err);
	void (*destroy)(struct mfd__codec *c);	/* NULL is fine */
};

struct mfd__codec {
	const struct mfd__codec_ops *ops;
};

#define MFD_CODEC_NONE 0

/* The codec with this hello id, or NULL. */
const struct mfd__codec_ops *mfd__codec_find(uint8_t id);

#endif
