/* migrate/outgoing — the source side of a migration: a precopy driver (rounds.c) whose sink is
 * the stream.
 *
 * Data flow: connect opens the main channel and every data channel and handshakes them all
 * (hellos first, then every reply, so no channel waits for another's round trip).  The run sends
 * the block table on the main channel and waits for the destination's acknowledgement, then
 * starts a reader thread on the main channel: it waits for the destination's COMMIT, or its
 * ERROR record, which it turns into the session's error at once (so a failing destination stops
 * the source promptly), counts the destination's round acknowledgements, and pings the channel
 * four times a second.  The rounds' pages go to the
 * workers as RAM jobs (payload/ram_pages.c): each detects zero pages and writes a RAM packet —
 * header, offsets, then the pages straight from source memory — on its own channel; each round
 * ends with a SYNC marker on every data channel.  Once the switchover is decided, the run waits
 * (briefly: settle) until the destination has acknowledged every round sent, so that the guest
 * is not stopped while the data channels still carry earlier rounds (that drain would count as
 * downtime).  At switchover, after the final round's pages,
 * the device states go on the main channel, every data channel ends with EOS, then END (totals,
 * rounds, digest), and the migration completes when the destination's COMMIT arrives.
 *
 * The source never writes to its own memory.  Private state (s->priv, struct outgoing): the
 * reader's results are written by the reader and read by the run thread after joining it; the
 * round acknowledgements are shared under ack_lock (a leaf); the rest is the run thread's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/session.h"

struct outgoing {
	uint8_t *meta;				/* run thread: MFD_PROTO_MAX_META bytes */
	struct mfd__end_rec end;		/* run thread */
	pthread_t reader;
	bool reader_started;			/* run thread */
	struct mfd__status_rec commit;		/* written by the reader, read after the join */
	bool got_commit;			/* written by the reader, read after the join */
	uint32_t synced;			/* rounds whose SYNC markers are queued: written by
						 * the run thread, read by the reader (atomic) */
	pthread_mutex_t ack_lock;		/* a leaf: protects acked and reader_done */
	pthread_cond_t ack_cond;		/* signalled when either changes; CLOCK_MONOTONIC */
	uint32_t acked;				/* rounds the destination acknowledged (reader) */
	bool reader_done;			/* the reader has ended (reader) */
};

/* A ROUND_ACK: rounds are acknowledged in order, and only rounds whose SYNC went out. */
static int round_acked(struct mfd_session *s, const struct mfd__pkt_hdr *h, const uint8_t *meta,
		       struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	uint32_t r;
	int rc = mfd__round_ack_decode(meta, h->meta_len, &r, err);
	if (rc)
		return rc;
	if (!(s->nego.features & MFD_FEAT_ROUND_ACK))
		return mfd__err_set(err, MFD_ETYPE, 0, "round acknowledgement not negotiated");
	uint32_t synced = __atomic_load_n(&o->synced, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&o->ack_lock);
	uint32_t next = o->acked;
	if (r == next && r < synced) {
		o->acked = r + 1;
		pthread_cond_broadcast(&o->ack_cond);
	}
	pthread_mutex_unlock(&o->ack_lock);
	if (r != next || r >= synced)
		return mfd__err_set(err, MFD_EROUND, 0, "destination acknowledged round %u; expected "
				    "round %u of the %u sent", r, next, synced);
	return 0;
}

static int connect_channels(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	struct mfd__uri u;
	int rc;
	if ((rc = mfd__uri_parse(uri, &u, err)))
		return rc;
	unsigned n = s->opt.channels + 1;
	if ((rc = mfd__uuid_generate(s->nego.session_id)))
		return mfd__err_set(err, rc, -1, "session id");
	s->nego.features = (s->opt.verify ? MFD_FEAT_VERIFY : 0) | MFD_FEAT_DEVICES |
			   MFD_FEAT_ZERO_RANGES | MFD_FEAT_ROUND_ACK;
	s->nego.batch_pages = s->opt.batch_pages;
	s->nego.codec = mfd__codec_find(s->opt.codec);
	if (!s->nego.codec)
		return mfd__err_set(err, MFD_EFEATURE, -1, "codec %u", s->opt.codec);
	for (unsigned i = 0; i < n; i++) {
		struct mfd__chan *c;
		rc = mfd__chan_connect(&u, i, n, s->opt.timeout_ms, s->cancel_fd, &c, err);
		if (rc) {
			mfd__uri_close_fds(&u, i + 1);	/* the session owns every fd given to it */
			return rc;
		}
		mfd__session_add_chan(s, i, c);
		/* The handshake: a reply within the timeout. */
		mfd__chan_set_timeout(c, s->opt.timeout_ms, s->opt.stall_ms);
	}
	return 0;
}

static int handshake(struct mfd_session *s, struct mfd_error *err)
{
	int rc;
	struct mfd__hello h = {
		.version = MFD_PROTO_VERSION,
		.min_version = MFD_PROTO_MIN_VERSION,
		.channel_count = (uint16_t)s->nchan,
		.page_size = s->ram.page_size,
		.features = s->nego.features,
		.codec = s->nego.codec->id,
		.batch_pages = s->nego.batch_pages,
	};
	memcpy(h.session, s->nego.session_id, MFD_UUID_LEN);
	for (unsigned i = 0; i < s->nchan; i++) {
		uint8_t b[MFD_HELLO_LEN];
		h.channel_id = (uint16_t)i;
		mfd__hello_encode(b, &h);
		if ((rc = mfd__chan_write(s->chan[i], b, sizeof(b))))
			return mfd__err_set(err, rc, (int)i, "sending handshake");
	}
	for (unsigned i = 0; i < s->nchan; i++) {
		uint8_t b[MFD_ACCEPT_LEN];
		struct mfd__accept a;
		if ((rc = mfd__chan_read(s->chan[i], b, sizeof(b))))
			return mfd__err_set(err, mfd__session_canceled(s) ? MFD_ECANCELED : rc, (int)i,
					    "waiting for the handshake reply");
		if ((rc = mfd__accept_decode(b, sizeof(b), &a, (int)i, err)))
			return rc;
		if (a.status)
			return mfd__err_set(err, a.status, (int)i, "destination refused the channel");
		if (a.features != s->nego.features)
			return mfd__err_set(err, MFD_EFEATURE, (int)i,
					    "destination accepted features 0x%llx of 0x%llx",
					    (unsigned long long)a.features,
					    (unsigned long long)s->nego.features);
	}
	return 0;
}

static int outgoing_connect(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	int rc = connect_channels(s, uri, err);
	if (rc == 0)
		rc = handshake(s, err);
	if (rc)
		return rc;
	/* From here, reads may legitimately wait a long time for their first byte (the COMMIT
	 * after the destination verified gigabytes); every transfer under way must progress. */
	for (unsigned i = 0; i < s->nchan; i++)
		mfd__chan_set_timeout(s->chan[i], 0, s->opt.stall_ms);
	pthread_mutex_lock(&s->lock);
	s->main_ready = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* An honest destination acknowledges every round before it commits (its receivers send the
 * acknowledgements before they finish; COMMIT comes after they did). */
static int commit_after_acks(struct mfd_session *s, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	if (!(s->nego.features & MFD_FEAT_ROUND_ACK))
		return 0;
	uint32_t synced = __atomic_load_n(&o->synced, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&o->ack_lock);
	uint32_t acked = o->acked;
	pthread_mutex_unlock(&o->ack_lock);
	if (acked == synced)
		return 0;
	return mfd__err_set(err, MFD_EROUND, 0, "destination committed with %u of %u rounds "
			    "acknowledged", acked, synced);
}

/* ---- the main channel ------------------------------------------------------------------------- */

static void *reader_main(void *arg)
{
	struct mfd_session *s = arg;
	struct outgoing *o = s->priv;
	uint8_t *meta = malloc(MFD_PROTO_MAX_META);
	struct mfd_error e;
	mfd_error_clear(&e);
	uint64_t cpu_mark = 0;
	if (!meta) {
		mfd__session_fail(s, -ENOMEM, 0, "main channel reader");
		goto done;
	}
	/* Ping the main channel four times a second, so the destination can tell a slow migration
	 * (rounds, switchover, digests) from a vanished source.  The period hardly depends on our own
	 * stall time: the destination's is what matters, and it may be shorter (or ours 0).  A
	 * 32-byte packet four times a second costs nothing. */
	int t = s->opt.stall_ms;
	int ping_ms = t > 0 ? MFD_MIN(MFD_MAX(t / 4, 1), 250) : 250;
	/* The pings keep their period whatever comes the other way (round acknowledgements). */
	uint64_t next_ping = mfd__now_ns() + (uint64_t)ping_ms * 1000000u;
	for (;;) {
		struct mfd__pkt_hdr h;
		uint64_t now = mfd__now_ns();
		int wait_ms = now >= next_ping ? 0 : (int)((next_ping - now + 999999u) / 1000000u);
		int rc = wait_ms ? mfd__chan_wait_readable(s->chan[0], wait_ms, -1) : -ETIMEDOUT;
		if (rc == -ETIMEDOUT || mfd__now_ns() >= next_ping) {
			next_ping = mfd__now_ns() + (uint64_t)ping_ms * 1000000u;
			uint64_t cpu = mfd__thread_cpu_ns();	/* the statistics keep up */
			MFD_ST_ADD(s, cpu_ns, cpu - cpu_mark);
			cpu_mark = cpu;
			if ((rc = mfd__session_send_main(s, MFD_PKT_PING, NULL, 0))) {
				/* A half-written PING would tear the stream: a failure like any. */
				mfd__session_fail(s, rc, 0, "sending a keepalive");
				break;
			}
			continue;
		}
		rc = mfd__stream_recv_main(s, "destination", &h, meta, &e);
		if (rc == 0 && h.type == MFD_PKT_ROUND_ACK && round_acked(s, &h, meta, &e) == 0)
			continue;
		if (e.code) {
			/* reported below */
		} else if (rc == 0 && h.type == MFD_PKT_COMMIT) {
			if (mfd__status_decode(meta, h.meta_len, &o->commit, 0, &e) == 0 &&
			    commit_after_acks(s, &e) == 0)
				o->got_commit = true;
		} else if (rc == 0) {
			mfd__err_set(&e, MFD_ETYPE, 0, "unexpected packet type %u from the destination",
				     h.type);
		}
		mfd__session_fail_err(s, &e);	/* nothing when the commit was good */
		break;
	}
done:
	pthread_mutex_lock(&o->ack_lock);
	o->reader_done = true;
	pthread_cond_broadcast(&o->ack_cond);
	pthread_mutex_unlock(&o->ack_lock);
	free(meta);
	MFD_ST_ADD(s, cpu_ns, mfd__thread_cpu_ns() - cpu_mark);	/* the rest of its life */
	return NULL;
}

/* The device set, so that the destination can refuse a migration it could not load before
 * any page moves. */
static int send_device_table(struct mfd_session *s, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	uint32_t n = s->devices.n;
	struct mfd__device_desc *d = calloc(n ? n : 1, sizeof(*d));
	uint8_t *data = malloc((size_t)(n ? n : 1) * MFD_DEVICES_ENTRY_MAX);
	int rc = 0;
	if (!d || !data) {
		rc = mfd__err_set(err, -ENOMEM, 0, "device table");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct mfd__device *v = &s->devices.v[i];
		memcpy(d[i].name, v->name, sizeof(d[i].name));
		d[i].instance = v->instance;
		d[i].version = v->version;
		d[i].fixed_size = v->fixed_size;
		memcpy(d[i].config, v->config, sizeof(d[i].config));
	}
	uint32_t len = mfd__devices_encode(data, d, n);
	mfd__devices_meta_encode(o->meta, n);
	if ((rc = mfd__session_send_main_buf(s, MFD_PKT_DEVICES, o->meta, MFD_DEVICES_META_LEN, data,
					     len)))
		mfd__err_set(err, rc, 0, "sending the device table");
out:
	free(d);
	free(data);
	return rc;
}

static int send_block_table(struct mfd_session *s, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	struct mfd__block_desc *d = calloc(s->ram.n, sizeof(*d));
	if (!d)
		return mfd__err_set(err, -ENOMEM, 0, "block table");
	for (uint32_t i = 0; i < s->ram.n; i++) {
		memcpy(d[i].name, s->ram.blocks[i].name, sizeof(d[i].name));
		d[i].length = s->ram.blocks[i].len;
		d[i].page_size = s->ram.blocks[i].page_size;
	}
	uint32_t len = mfd__blocks_encode(o->meta, d, s->ram.n);
	free(d);
	int rc = mfd__session_send_main(s, MFD_PKT_BLOCKS, o->meta, len);
	if (rc)
		return mfd__err_set(err, rc, 0, "sending the block table");
	if ((rc = send_device_table(s, err)))
		return rc;
	struct mfd__pkt_hdr h;
	if ((rc = mfd__stream_recv_main(s, "destination", &h, o->meta, err)))
		return rc;
	if (h.type != MFD_PKT_BLOCKS_ACK)
		return mfd__err_set(err, MFD_ETYPE, 0, "expected the block table ack, got type %u",
				    h.type);
	struct mfd__status_rec ack;
	if ((rc = mfd__status_decode(o->meta, h.meta_len, &ack, 0, err)))
		return rc;
	if (ack.status)
		return mfd__err_set(err, ack.status, 0, "destination refused the block table");
	return 0;
}

static int send_devices(struct mfd_session *s, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = 0;
	for (uint32_t i = 0; i < s->devices.n && rc == 0; i++) {
		const struct mfd__device *d = &s->devices.v[i];
		long n = mfd__device_save(d, &buf, &cap, MFD_PROTO_MAX_DATA, err);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		struct mfd__device_id id = { .instance = d->instance, .version = d->version };
		memcpy(id.name, d->name, sizeof(id.name));
		uint32_t ml = mfd__device_meta_encode(o->meta, &id);
		rc = mfd__session_send_main_buf(s, MFD_PKT_DEVICE, o->meta, ml, buf, (uint32_t)n);
		if (rc)
			mfd__err_set(err, rc, 0, "sending device %s.%u", d->name, d->instance);
		else
			MFD_ST_ADD(s, device_bytes, (uint64_t)n);
	}
	free(buf);
	return rc;
}

/* ---- the sink -------------------------------------------------------------------------------- */

static int stream_begin(struct mfd_session *s, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	int rc = send_block_table(s, err);
	if (rc)
		return rc;
	if ((rc = -pthread_create(&o->reader, NULL, reader_main, s)))
		return mfd__err_set(err, rc, -1, "starting the main channel reader");
	o->reader_started = true;
	return 0;
}

static int stream_end_round(struct mfd_session *s, uint32_t round)
{
	struct outgoing *o = s->priv;
	__atomic_store_n(&o->synced, round + 1, __ATOMIC_RELEASE);	/* before any SYNC goes */
	return mfd__stream_sync(s, round);
}

/* The switchover is decided: wait until the destination holds every round sent (its last
 * acknowledgement), so that stopping the guest does not start a drain of earlier rounds.  Not
 * for ever: past the stall time (2 s without one) the guest is stopped all the same, and the
 * drain counts as downtime as it would without acknowledgements.  A failure or a cancel ends
 * the wait with its code. */
static int stream_settle(struct mfd_session *s, uint32_t rounds)
{
	struct outgoing *o = s->priv;
	if (!(s->nego.features & MFD_FEAT_ROUND_ACK) || s->opt.knobs.no_settle)
		return 0;
	int bound = s->opt.knobs.settle_ms ? s->opt.knobs.settle_ms
			: s->opt.stall_ms > 0 ? s->opt.stall_ms : 2000;
	uint64_t now = mfd__now_ns(), end = now + (uint64_t)bound * 1000000u;
	/* ack_lock is a leaf: the cancel and the error box are looked at outside it. */
	while (!mfd__session_canceled(s) && !mfd__errbox_code(&s->errbox)) {
		uint64_t t = MFD_MIN(end, now + 20000000u);	/* a cancel is seen within 20 ms */
		struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u),
				       .tv_nsec = (long)(t % 1000000000u) };
		pthread_mutex_lock(&o->ack_lock);
		if (o->acked < rounds && !o->reader_done)
			pthread_cond_timedwait(&o->ack_cond, &o->ack_lock, &ts);
		bool done = o->acked >= rounds || o->reader_done;
		pthread_mutex_unlock(&o->ack_lock);
		now = mfd__now_ns();
		if (done || now >= end)
			break;
	}
	if (mfd__session_canceled(s))
		return MFD_ECANCELED;
	return mfd__errbox_code(&s->errbox);
}

static int stream_finish(struct mfd_session *s, uint32_t rounds, struct mfd_error *err)
{
	struct outgoing *o = s->priv;
	int rc = 0;
	if (s->devices.n)
		rc = send_devices(s, err);
	if (rc == 0)
		rc = mfd__stream_eos(s, rounds);
	if (rc == 0)
		rc = mfd__pool_sync(s->pool);
	if (rc == 0 && s->opt.verify) {
		rc = mfd__precopy_digest(s);
		o->end.digest = __atomic_load_n(&s->ramx.digest, __ATOMIC_RELAXED);
		o->end.flags = MFD_FEAT_VERIFY;
	}
	if (rc)
		return rc;
	o->end.normal_pages = __atomic_load_n(&s->ramx.normal_pages, __ATOMIC_RELAXED);
	o->end.zero_pages = __atomic_load_n(&s->ramx.zero_pages, __ATOMIC_RELAXED);
	o->end.rounds = rounds;
	mfd__end_encode(o->meta, &o->end);
	if ((rc = mfd__session_send_main(s, MFD_PKT_END, o->meta, MFD_END_REC_LEN)))
		mfd__err_set(err, rc, 0, "sending END");
	return rc;
}

static int stream_conclude(struct mfd_session *s, int rc)
{
	struct outgoing *o = s->priv;
	if (o->reader_started)
		pthread_join(o->reader, NULL);	/* a failure shut the channel: it has ended */
	o->reader_started = false;
	/* Once the destination committed, the guest is its: a cancel or a teardown error that came
	 * after must not make us report failure (and resume a second copy of the guest here). */
	if (o->got_commit && o->commit.status == 0 &&
	    (!s->opt.verify || o->commit.digest == o->end.digest)) {
		mfd__session_commit(s);
		if (s->opt.verify)
			MFD_ST_SET(s, verified, true);
		return 0;
	}
	if (rc)
		return rc;
	if (mfd__errbox_code(&s->errbox))
		return mfd__errbox_code(&s->errbox);
	if (!o->got_commit)
		return mfd__session_fail(s, MFD_ECLOSED, 0, "no commit from the destination");
	if (o->commit.status)
		return mfd__session_fail(s, o->commit.status, 0, "destination did not commit");
	return mfd__session_fail(s, MFD_EVERIFY, -1, "source digest %016llx, destination %016llx",
				 (unsigned long long)o->end.digest,
				 (unsigned long long)o->commit.digest);
}

static const struct mfd__sink_ops stream_sink = {
	.verb = "sending",
	.job_verb = MFD_JOB_SEND,
	.begin = stream_begin,
	.end_round = stream_end_round,
	.settle = stream_settle,
	.progress = mfd__stream_bytes_sent,
	.finish = stream_finish,
	.conclude = stream_conclude,
};

static int outgoing_run(struct mfd_session *s, struct mfd_error *err)
{
	pthread_mutex_lock(&s->lock);
	bool ready = s->main_ready;
	pthread_mutex_unlock(&s->lock);
	if (!ready)
		return mfd__err_set(err, MFD_ESTATE, -1, "connect (successfully) before run");
	struct outgoing *o = calloc(1, sizeof(*o));
	if (!o || !(o->meta = malloc(MFD_PROTO_MAX_META))) {
		free(o);
		return mfd__err_set(err, -ENOMEM, -1, "buffers");
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);	/* mfd__now_ns's clock */
	pthread_cond_init(&o->ack_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&o->ack_lock, NULL);
	s->priv = o;	/* run thread only until the reader starts */
	mfd__ram_xfer_setup(&s->ramx, &s->ram, &s->errbox, &s->rate, s->opt.zero_detect,
			    s->nego.batch_pages);
	int rc = mfd__stream_add_payloads(s, false);
	if (rc)
		return mfd__err_set(err, rc, -1, "payloads");
	return mfd__precopy_run(s, &stream_sink);
}

static void outgoing_free(struct mfd_session *s)
{
	struct outgoing *o = s->priv;
	if (!o)
		return;
	pthread_cond_destroy(&o->ack_cond);
	pthread_mutex_destroy(&o->ack_lock);
	free(o->meta);
	free(o);
	s->priv = NULL;
}

const struct mfd__role_ops mfd__role_outgoing = {
	.name = "migration",
	.trackable = true,
	.connect = outgoing_connect,
	.run = outgoing_run,
	.free = outgoing_free,
};
