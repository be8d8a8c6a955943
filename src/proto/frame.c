/* proto/frame — see frame.h. */
#include <errno.h>
#include <stdio.h>
#include "chan/chan.h"
#include "core/err.h"
#include "proto/frame.h"

static void encode_hdr(uint8_t hdr[MFD_PKT_HDR_LEN], uint64_t *seq, const struct mfd__frame *f)
{
	struct mfd__pkt_hdr h = { .type = f->type, .seq = (*seq)++, .meta_len = f->meta_len,
				  .data_len = f->data_len, .round = f->round };
	mfd__pkt_hdr_encode(hdr, &h, f->meta);
}

int mfd__frame_sendv(struct mfd__chan *c, uint64_t *seq, const struct mfd__frame *f, struct iovec *iov,
		     int ndata)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	encode_hdr(hdr, seq, f);
	int n = 0;
	iov[n++] = (struct iovec){ hdr, sizeof(hdr) };
	if (f->meta_len)
		iov[n++] = (struct iovec){ (void *)f->meta, f->meta_len };
	else	/* shift nothing: an empty entry costs the kernel nothing */
		iov[n++] = (struct iovec){ NULL, 0 };
	int rc = mfd__chan_writev(c, iov, n + ndata);
	if (rc == 0)
		__atomic_fetch_add(&c->packets_out, 1, __ATOMIC_RELAXED);
	return rc;
}

int mfd__frame_send_buf(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round,
			const void *meta, uint32_t meta_len, const void *data, uint32_t data_len)
{
	struct mfd__frame f = { .type = type, .round = round, .meta = meta, .meta_len = meta_len,
				.data_len = data_len };
	struct iovec iov[MFD_FRAME_IOV_HEAD + 1];
	iov[MFD_FRAME_IOV_HEAD] = (struct iovec){ (void *)data, data_len };
	return mfd__frame_sendv(c, seq, &f, iov, data_len ? 1 : 0);
}

int mfd__frame_send(struct mfd__chan *c, uint64_t *seq, uint8_t type, uint32_t round, const void *meta,
		    uint32_t meta_len)
{
	return mfd__frame_send_buf(c, seq, type, round, meta, meta_len, NULL, 0);
}

int mfd__frame_recv(struct mfd__chan *c, uint64_t *seq, struct mfd__pkt_hdr *h, uint8_t *meta,
		    struct mfd_error *err)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	int rc = mfd__chan_read(c, hdr, sizeof(hdr));
	if (rc)
		return mfd__err_set(err, rc, c->id, "reading packet %llu", (unsigned long long)*seq);
	if ((rc = mfd__pkt_hdr_decode(hdr, h, c->id, err)))
		return rc;
	struct iovec v = { meta, h->meta_len };
	if ((rc = mfd__chan_readv_more(c, &v, 1)))
		return mfd__err_set(err, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, c->id,
				    "reading the meta of packet %llu", (unsigned long long)*seq);
	if ((rc = mfd__pkt_check(hdr, meta, h->meta_len, c->id, err)))
		return rc;
	if (h->seq != *seq)
		return mfd__err_set(err, MFD_ESEQ, c->id, "packet %llu, expected %llu",
				    (unsigned long long)h->seq, (unsigned long long)*seq);
	(*seq)++;
	__atomic_fetch_add(&c->packets_in, 1, __ATOMIC_RELAXED);
	return 0;
}

int mfd__frame_read_data(struct mfd__chan *c, struct iovec *iov, int iovcnt, const char *what,
			 struct mfd_error *err)
{
	int rc = mfd__chan_readv_more(c, iov, iovcnt);
	if (rc)
		return mfd__err_set(err, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, c->id, "reading %s", what);
	return 0;
}

void mfd__frame_try_send_error(struct mfd__chan *c, uint64_t *seq, int code, const char *msg)
{
	uint8_t meta[8 + MFD_ERROR_MSG_MAX], hdr[MFD_PKT_HDR_LEN];
	uint32_t len = mfd__errrec_encode(meta, code, msg);
	struct mfd__frame f = { .type = MFD_PKT_ERROR, .meta = meta, .meta_len = len };
	encode_hdr(hdr, seq, &f);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { meta, len } };
	if (mfd__chan_try_writev(c, iov, 2) > 0)
		__atomic_fetch_add(&c->packets_out, 1, __ATOMIC_RELAXED);
}

int mfd__frame_peer_error(const struct mfd__pkt_hdr *h, const uint8_t *meta, const char *who,
			  struct mfd_error *err)
{
	int code;
	char msg[MFD_ERROR_MSG_MAX], prefix[64];
	int rc = mfd__errrec_decode(meta, h->meta_len, &code, msg, sizeof(msg), 0, err);
	if (rc)
		return rc;
	snprintf(prefix, sizeof(prefix), "%s failed", who);
	return mfd__err_set_peer(err, code, prefix, msg);
}
