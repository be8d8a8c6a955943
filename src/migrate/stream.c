/* migrate/stream — what the outgoing and incoming roles share on the data channels: the payload
 * table of a stream (RAM pages, the SYNC and EOS markers) and the receivers.
 *
 * The markers are payloads without data.  SYNC(r) ends round r on its channel: the receiver
 * waits at a barrier until every data channel has read its SYNC(r) too, so no page of round r+1
 * is written before every copy of round r has landed (the ordering guarantee, docs/design.md).
 * With the round-ack feature, the receiver whose SYNC(r) completes round r tells the source on
 * the main channel (ROUND_ACK), so that the source can stop its guest only once nothing of the
 * rounds before is still in flight.
 * EOS ends a channel's stream, with the number of packets it carried.  A receiver is one long
 * job per data channel: it reads packets and hands each to the payload its type names. */
#include <errno.h>
#include <stdlib.h>
#include "migrate/session.h"

struct mfd__stream {
	struct mfd__barrier barrier;	/* the receivers of a destination; its own lock (a leaf) */
	bool barrier_ready;		/* set before the workers start, then read-only */
	uint64_t syncs;			/* SYNC markers read by all receivers: atomic add */
};

/* ---- SYNC ------------------------------------------------------------------------------------ */

static int sync_send(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	int rc = mfd__frame_send(w->chan, &w->seq, MFD_PKT_SYNC, j->round, NULL, 0);
	if (rc)
		mfd__errbox_set(w->errbox, rc, w->chan_id, "sending the end of round %u", j->round);
	return rc;
}

static int sync_recv(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		     const uint8_t *meta)
{
	struct mfd_session *s = p->ctx;
	struct mfd_error e;
	mfd_error_clear(&e);
	if (h->meta_len != 0)
		mfd__err_set(&e, MFD_ELENGTH, w->chan_id, "SYNC with %u bytes of meta", h->meta_len);
	else if (h->round != w->round)
		mfd__err_set(&e, MFD_EROUND, w->chan_id, "SYNC of round %u in round %u", h->round,
			     w->round);
	if (e.code) {
		mfd__errbox_setv(w->errbox, &e);
		return e.code;
	}
	/* The SYNC that completes a round: every page of the round has landed (each receiver
	 * writes a packet's pages before it reads the next packet, and with the barrier no channel
	 * reads a SYNC of the next round before this one).  Its receiver acknowledges the round.
	 * (With the no_barrier test knob the count mixes rounds and an acknowledgement may come
	 * early; the tests that use it turn the source's wait off.) */
	mfd__pool_cpu_checkpoint();	/* each round's CPU in the statistics */
	if (s->nego.features & MFD_FEAT_ROUND_ACK) {
		unsigned data = s->nchan - 1;
		uint64_t n = __atomic_add_fetch(&s->stream->syncs, 1, __ATOMIC_ACQ_REL);
		if (n % data == 0) {
			uint8_t m[MFD_ROUND_ACK_LEN];
			uint32_t r = (uint32_t)(n / data - 1);
			mfd__round_ack_encode(m, r);
			int rc = mfd__session_send_main(s, MFD_PKT_ROUND_ACK, m, sizeof(m));
			if (rc) {
				mfd__errbox_set(w->errbox, rc, 0, "acknowledging round %u", r);
				return rc;
			}
		}
	}
	/* Ordering: nobody starts round r+1 before every channel finished round r. */
	if (!s->opt.knobs.no_barrier && mfd__barrier_wait(&s->stream->barrier)) {
		int code = mfd__errbox_code(w->errbox);
		return code ? code : MFD_ECANCELED;
	}
	w->round++;
	return 0;
}

static const struct mfd__payload_ops sync_ops = {
	.name = "sync",
	.pkt_type = MFD_PKT_SYNC,
	.job = { [MFD_JOB_SEND] = sync_send },
	.recv = sync_recv,
};

/* ---- EOS ------------------------------------------------------------------------------------- */

static int eos_send(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	uint8_t meta[MFD_EOS_REC_LEN];
	mfd__put64(meta, w->seq);	/* the packets this channel carried before this one */
	int rc = mfd__frame_send(w->chan, &w->seq, MFD_PKT_EOS, j->round, meta, sizeof(meta));
	if (rc)
		mfd__errbox_set(w->errbox, rc, w->chan_id, "sending the end of stream");
	return rc;
}

static int eos_recv(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		    const uint8_t *meta)
{
	struct mfd_session *s = p->ctx;
	struct mfd_error e;
	mfd_error_clear(&e);
	if (h->round != w->round)
		mfd__err_set(&e, MFD_EROUND, w->chan_id, "end of stream in round %u, channel in round %u",
			     h->round, w->round);
	else if (h->meta_len != MFD_EOS_REC_LEN)
		mfd__err_set(&e, MFD_ELENGTH, w->chan_id, "end of stream of %u bytes", h->meta_len);
	else if (mfd__get64(meta) != h->seq)
		mfd__err_set(&e, MFD_ECOUNT, w->chan_id, "source sent %llu packets, %llu arrived",
			     (unsigned long long)mfd__get64(meta), (unsigned long long)h->seq);
	if (e.code) {
		mfd__errbox_setv(w->errbox, &e);
		return e.code;
	}
	w->eos = true;
	/* A channel that ended no longer holds the others at later markers; a source that ends
	 * channels at different rounds is caught by END's round count. */
	mfd__barrier_leave(&s->stream->barrier);
	return 0;
}

static const struct mfd__payload_ops eos_ops = {
	.name = "eos",
	.pkt_type = MFD_PKT_EOS,
	.job = { [MFD_JOB_SEND] = eos_send },
	.recv = eos_recv,
};

/* ---- the receivers ------------------------------------------------------------------------- */

/* One data channel until its end of stream: each packet goes to the payload its type names. */
static int receive(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	struct mfd_session *s = p->ctx;
	struct mfd_error e;
	while (!w->eos) {
		struct mfd__pkt_hdr h;
		mfd_error_clear(&e);
		int rc = mfd__frame_recv(w->chan, &w->seq, &h, w->meta, &e);
		if (rc) {
			if (rc == MFD_ECLOSED)
				mfd__err_set(&e, rc, w->chan_id, "before the end of stream (%llu packets "
					     "received)", (unsigned long long)w->seq);
			mfd__errbox_setv(w->errbox, &e);
			return rc;
		}
		const struct mfd__payload *q = mfd__payloads_by_type(&s->payloads, h.type);
		if (!q || !q->ops->recv) {
			mfd__errbox_set(w->errbox, MFD_ETYPE, w->chan_id, "packet type %u on a data channel",
					h.type);
			return MFD_ETYPE;
		}
		if ((rc = q->ops->recv(w, q, &h, w->meta)))
			return rc;
		if (w->seq % 64 == 0)	/* the statistics' CPU time keeps up with a long job */
			mfd__pool_cpu_checkpoint();
	}
	return 0;
}

static const struct mfd__payload_ops receiver_ops = {
	.name = "receiver",
	.job = { [MFD_JOB_RECV] = receive },
};

/* ---- setup ------------------------------------------------------------------------------------- */

int mfd__stream_add_payloads(struct mfd_session *s, bool incoming)
{
	struct mfd__stream *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	s->stream = st;
	pthread_mutex_unlock(&s->lock);
	int rc = mfd__session_add_payload(s, &mfd__ram_pages_ops, &s->ramx);
	if (rc >= 0) {
		s->ram_payload = (uint16_t)rc;
		rc = mfd__session_add_payload(s, &mfd__ram_zero_ops, &s->ramx);
	}
	if (rc >= 0) {
		/* Zero ranges go out when negotiated: a source of this version always offers
		 * them, and the destination accepts every feature offered or refuses the hello
		 * (docs/format.md, "Feature bits"). */
		if (s->nego.features & MFD_FEAT_ZERO_RANGES)
			s->ramx.zero_payload = rc;
		rc = mfd__session_add_payload(s, &sync_ops, s);
	}
	if (rc >= 0)
		rc = mfd__session_add_payload(s, &eos_ops, s);
	if (rc >= 0 && incoming)
		rc = mfd__session_add_payload(s, &receiver_ops, s);
	return rc < 0 ? rc : 0;
}

static int broadcast(struct mfd_session *s, const struct mfd__payload_ops *ops, uint32_t round)
{
	const struct mfd__payload *p = mfd__payloads_by_type(&s->payloads, ops->pkt_type);
	struct mfd__job j = { .payload = p->index, .verb = MFD_JOB_SEND, .round = round };
	int rc = 0;
	for (unsigned w = 0; w < s->nworkers && rc == 0; w++)
		rc = mfd__pool_submit_to(s->pool, w, &j);
	return rc;
}

int mfd__stream_sync(struct mfd_session *s, uint32_t round)
{
	return broadcast(s, &sync_ops, round);
}

int mfd__stream_eos(struct mfd_session *s, uint32_t round)
{
	return broadcast(s, &eos_ops, round);
}

int mfd__stream_start_receivers(struct mfd_session *s, unsigned n, struct mfd_error *err)
{
	struct mfd__stream *st = s->stream;
	mfd__barrier_init(&st->barrier, n);
	pthread_mutex_lock(&s->lock);
	st->barrier_ready = true;	/* the failure path may abort it from now on */
	pthread_mutex_unlock(&s->lock);
	int rc = mfd__session_start_workers(s, n, err);
	if (rc)
		return rc;
	int idx = -1;
	for (unsigned i = 0; i < s->payloads.n; i++)
		if (s->payloads.v[i].ops == &receiver_ops)
			idx = (int)i;
	struct mfd__job j = { .payload = (uint16_t)idx, .verb = MFD_JOB_RECV };
	for (unsigned w = 0; w < s->nworkers && rc == 0; w++)
		rc = mfd__pool_submit_to(s->pool, w, &j);
	return rc ? mfd__err_set(err, rc, -1, "starting the receivers") : 0;
}

void mfd__stream_abort(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	struct mfd__stream *st = s->stream;
	bool ready = st && st->barrier_ready;
	pthread_mutex_unlock(&s->lock);
	if (ready)
		mfd__barrier_abort(&st->barrier);
}

void mfd__stream_free(struct mfd_session *s)
{
	if (!s->stream)
		return;
	if (s->stream->barrier_ready)
		mfd__barrier_destroy(&s->stream->barrier);
	free(s->stream);
	s->stream = NULL;
}

uint64_t mfd__stream_bytes_sent(struct mfd_session *s)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < s->nworkers; i++)
		n += __atomic_load_n(&s->workers[i].chan->bytes_out, __ATOMIC_RELAXED);
	return n;
}

/* ---- the main channel ---------------------------------------------------------------------- */

int mfd__stream_recv_main(struct mfd_session *s, const char *peer, struct mfd__pkt_hdr *h,
			  uint8_t *meta, struct mfd_error *err)
{
	int rc;
	do {	/* PINGs only keep the idle timeout from firing */
		struct mfd_error e;
		mfd_error_clear(&e);
		rc = mfd__frame_recv(s->chan[0], &s->main_rx_seq, h, meta, &e);
		if (rc == -ETIMEDOUT)
			return mfd__err_set(err, rc, 0, "%s silent (or trickling) for %d ms", peer,
					    s->opt.stall_ms);
		if (rc) {
			mfd__err_copy(err, &e);
			return rc;
		}
		if (h->data_len && h->type != MFD_PKT_DEVICE && h->type != MFD_PKT_DEVICES)
			return mfd__err_set(err, MFD_ETYPE, 0, "packet type %u with data on the main "
					    "channel", h->type);
		if (h->round != 0)
			return mfd__err_set(err, MFD_EROUND, 0, "main-channel packet with round %u",
					    h->round);
	} while (h->type == MFD_PKT_PING && h->meta_len == 0);
	if (h->type != MFD_PKT_ERROR)
		return 0;
	/* The peer's reason is the root cause: it replaces the end of stream a data channel may
	 * already have reported as the peer went down. */
	struct mfd_error pe;
	mfd_error_clear(&pe);
	rc = mfd__frame_peer_error(h, meta, peer, &pe);
	mfd__session_peer_error(s, &pe);	/* a malformed record is our own error instead */
	mfd__err_copy(err, &pe);
	return rc;
}
