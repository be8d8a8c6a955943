/* proto/frame — packets on a channel: the one place that builds, checksums, sends and receives
 * them, for every role and every channel (docs/format.md, "packets").
 *
 * A packet is a 32-byte header, its meta (type-specific, covered by the header checksum) and its
 * data (page contents, device state: read by whoever knows where it goes).  Senders hand the
 * header and meta to mfd__frame_send*, which fills the header's sequence number and checksum and
 * writes header, meta and data with one writev, zero copy.  Receivers get a decoded and checked
 * header and meta from mfd__frame_recv (magic, type, bounds, checksum, sequence) and read the data
 * themselves.  Main-channel records that every role shares (ERROR) are built and read here too.
 *
 * Sequence numbers: each channel direction has one counter, owned by the one thread that sends
 * (or receives) on it, passed as `seq`; a thread sharing a direction (the main channel's sends)
 * serialises around these calls.  The channel's packet counters are atomic (stats only). */
#ifndef MFD_PROTO_FRAME_H
#define MFD_PROTO_FRAME_H

#include <sys/uio.h>
#include "proto/proto.h"

struct mfd__chan;

/* iovec slots that a caller of mfd__frame_sendv leaves free before its data: the header and the
 * meta go there, so that the packet leaves in one writev without copying the data's vector. */
#define MFD_FRAME_IOV_HEAD 2

struct mfd__frame {
	uint8_t type;		/* enum mfd__pkt_type */
	uint32_t round;		/* precopy round (data channels), 0 on the main channel */
	const void *meta;
	uint32_t meta_len;
	uint32_t data_len;	/* bytes described by the data iovecs */
};

/* Send f: header, meta, then the data in iov[MFD_FRAME_IOV_HEAD .. MFD_FRAME_IOV_HEAD + ndata)
 * (iov[0] and iov[1] are overwritten; iov is consumed).  0 or a negative code. */
int mfd__frame_sendv(struct mfd__chan *c, uint64_t *seq, const struct mfd__frame *f, struct iovec *iov,
		     int ndata);
/* Send a packet without data. */
int mfd__frame_send(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round, const void *meta,
		    uint32_t meta_len);
/* Send a packet whose data is one buffer. */
int mfd__frame_send_buf(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round,
			const void *meta, uint32_t meta_len, const void *data, uint32_t data_len);

/* Receive one packet's header and meta (into meta, MFD_PROTO_MAX_META bytes): every header field
 * checked, the checksum, and the sequence number against *seq (then advanced).  The caller
 * reads h->data_len bytes of data next.  Errors name the channel: the end of the stream before a
 * header is MFD_ECLOSED, inside one MFD_ETRUNC. */
int mfd__frame_recv(struct mfd__chan *c, uint64_t *seq, struct mfd__pkt_hdr *h, uint8_t *meta,
		    struct mfd_error *err);
/* Read a packet's data into iov (consumed); `what` names it for the message. */
int mfd__frame_read_data(struct mfd__chan *c, struct iovec *iov, int iovcnt, const char *what,
			 struct mfd_error *err);

/* ---- ERROR records (main channel, either way) ---------------------------------------------- */
/* Best effort, never blocking: the failure path must not wait on a peer that stopped reading.
 * The record goes out whole, in part (the peer sees a torn packet) or not at all. */
void mfd__frame_try_send_error(struct mfd__chan *c, uint64_t *seq, int code, const char *msg);
/* An ERROR record received: record the peer's code and reason in err as "<who> failed: <msg>".
 * Returns the peer's code, or the decode error of a malformed record. */
int mfd__frame_peer_error(const struct mfd__pkt_hdr *h, const uint8_t *meta, const char *who,
			  struct mfd_error *err);

#endif
