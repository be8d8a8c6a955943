/* migrate/outgoing — the source side of a migration.
 *
 * Data flow: the run thread sends the block table on the main channel and waits for the
 * destination's acknowledgement; it then walks every block in batches of pages and submits one
 * job per batch to the pool.  Each worker detects zero pages and writes a RAM packet — header,
 * offsets, then the pages straight from source memory — on its own channel.  A reader thread on
 * the main channel waits for the destination's COMMIT, or its ERROR record, which it turns into
 * the session's error at once (so a failing destination stops the source promptly).
 *
 * Live migration (a dirty tracker is set): tracking starts before the first full pass.  Each
 * round ends with a SYNC marker on every data channel; the destination applies nothing of round
 * r+1 before every channel has delivered round r (docs/design.md, "ordering").  After each round
 * the pool drains, the tracker's dirty pages become the next round's set, and the convergence
 * controller decides: another round (maybe throttling the guest), switchover, or failure.  At
 * switchover the embedder stops the guest, a final dirty sync gives the last set, device states
 * go on the main channel, every data channel ends with EOS, then END (totals, rounds, digest),
 * and the migration completes when the destination's COMMIT arrives.
 *
 * The source never writes to its own memory.  On any failure the tracker is stopped (memory
 * writable again), the throttle lifted, and a guest stopped for the switchover resumed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "migrate/session.h"

static void set_io_timeout(int fd, int timeout_ms, bool recv, bool send)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	if (recv)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send)
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int mfd__outgoing_connect(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	struct mfd__uri u;
	int rc;
	if (s->ram.n == 0)
		return mfd__err_set(err, -EINVAL, -1, "register RAM blocks before connecting");
	if ((rc = mfd__uri_parse(uri, &u, err)))
		return rc;
	if (u.kind == MFD_URI_FILE)
		return mfd__err_set(err, MFD_EURI, -1, "'%s': file channels are not streams", uri);
	unsigned n = s->channels + 1;
	if (u.kind == MFD_URI_FD && u.nfds != (int)n)
		return mfd__err_set(err, MFD_EURI, -1, "'%s': %d fds for %u channels (main + %u data)",
				    uri, u.nfds, n, s->channels);
	if ((rc = mfd__uuid_generate(s->session_id)))
		return mfd__err_set(err, rc, -1, "session id");
	s->features = s->verify ? MFD_FEAT_VERIFY : 0;
	pthread_mutex_lock(&s->lock);
	s->nchan = n;
	pthread_mutex_unlock(&s->lock);

	for (unsigned i = 0; i < n; i++) {
		int fd = u.kind == MFD_URI_FD ? u.fds[i]
					      : mfd__sock_connect(&u, s->timeout_ms, s->cancel_fd, err);
		if (fd >= 0 && s->timeout_ms)
			set_io_timeout(fd, s->timeout_ms, true, true);
		if (fd < 0 || (rc = mfd__session_add_chan(s, i, fd))) {
			/* The session owns every fd given to it: close the ones not yet wrapped. */
			for (unsigned k = i + 1; u.kind == MFD_URI_FD && k < n; k++)
				close(u.fds[k]);
			return fd < 0 ? fd : mfd__err_set(err, rc, (int)i, "channel");
		}
	}
	/* Say hello on every channel, then collect every answer: the destination accepts channels in
	 * whatever order they arrive, so no channel waits for another's round trip. */
	for (unsigned i = 0; i < n; i++) {
		uint8_t b[MFD_HELLO_LEN];
		struct mfd__hello h = {
			.version = MFD_PROTO_VERSION,
			.min_version = MFD_PROTO_MIN_VERSION,
			.channel_id = (uint16_t)i,
			.channel_count = (uint16_t)n,
			.page_size = s->ram.page_size,
			.features = s->features,
			.batch_pages = s->batch_pages,
		};
		memcpy(h.session, s->session_id, MFD_UUID_LEN);
		mfd__hello_encode(b, &h);
		if ((rc = mfd__chan_write(s->chan[i], b, sizeof(b))))
			return mfd__err_set(err, rc, (int)i, "sending handshake");
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t b[MFD_ACCEPT_LEN];
		struct mfd__accept a;
		if ((rc = mfd__chan_read(s->chan[i], b, sizeof(b))))
			return mfd__err_set(err, mfd__session_canceled(s) ? MFD_ECANCELED : rc, (int)i,
					    "waiting for the handshake reply");
		if ((rc = mfd__accept_decode(b, sizeof(b), &a, (int)i, err)))
			return rc;
		if (a.status)
			return mfd__err_set(err, a.status, (int)i, "destination refused the channel");
		if (a.features != s->features)
			return mfd__err_set(err, MFD_EFEATURE, (int)i,
					    "destination accepted features 0x%llx of 0x%llx",
					    (unsigned long long)a.features,
					    (unsigned long long)s->features);
	}
	/* From here, reads on the main channel may legitimately wait a long time (the destination
	 * verifying gigabytes); writes keep their timeout so a stuck destination is noticed. */
	set_io_timeout(s->chan[0]->fd, 0, true, false);
	pthread_mutex_lock(&s->lock);
	s->main_ready = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- workers ------------------------------------------------------------------------------ */

static int send_ram(struct mfd_session *s, unsigned w, const struct mfd__job *j)
{
	struct mfd__wstate *ws = &s->ws[w];
	struct mfd__chan *c = s->chan[w + 1];
	const struct mfd__block *b = &s->ram.blocks[j->block];
	uint32_t ps = b->page_size;
	struct mfd__ram_batch *bt = &ws->batch;

	bt->block_id = j->block;
	bt->zero = 0;
	if (j->kind == MFD_JOB_RAM_DIRTY) {
		const uint64_t *map = s->dirty[j->block];
		uint64_t end = j->first + j->count, n = 0;
		for (uint64_t p = mfd__bitmap_next_set(map, end, j->first); p < end;
		     p = mfd__bitmap_next_set(map, end, p + 1))
			bt->offsets[n++] = p * ps;
		bt->normal = (uint32_t)n;
		if (n == 0)
			return 0;
	} else {
		bt->normal = (uint32_t)j->count;
		for (uint32_t i = 0; i < bt->normal; i++)
			bt->offsets[i] = (j->first + i) * ps;
	}
	mfd__ram_batch_classify(bt, b->host, ps, s->zero_detect);

	uint32_t meta_len = mfd__ram_meta_encode(ws->meta, bt);
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = {
		.type = MFD_PKT_RAM,
		.seq = ws->seq++,
		.meta_len = meta_len,
		.data_len = bt->normal * ps,
		.round = j->round,
	};
	mfd__pkt_hdr_encode(hdr, &h, ws->meta);
	if (mfd__ratelimit_wait(&s->rate, sizeof(hdr) + meta_len + h.data_len, &s->errbox.code))
		return mfd__errbox_code(&s->errbox);
	ws->iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	ws->iov[1] = (struct iovec){ ws->meta, meta_len };
	int n = 2 + mfd__ram_batch_iov(bt, b->host, ps, ws->iov + 2);
	MFD_GUEST_READS_BEGIN();
	int rc = mfd__chan_writev(c, ws->iov, n);
	MFD_GUEST_READS_END();
	if (rc) {
		mfd__errbox_set(&s->errbox, rc, c->id, "sending RAM packet %llu",
				(unsigned long long)h.seq);
		return rc;
	}
	__atomic_fetch_add(&ws->packets, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->normal_pages, bt->normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->zero_pages, bt->zero, __ATOMIC_RELAXED);
	return 0;
}

static int out_job(void *owner, unsigned w, void *job)
{
	struct mfd_session *s = owner;
	const struct mfd__job *j = job;
	switch (j->kind) {
	case MFD_JOB_RAM:
	case MFD_JOB_RAM_DIRTY:
		return send_ram(s, w, j);
	case MFD_JOB_SYNC: {
		struct mfd__wstate *ws = &s->ws[w];
		int rc = mfd__send_packet(s->chan[w + 1], &ws->seq, MFD_PKT_SYNC, j->round, NULL, 0,
					  &s->errbox);
		if (rc == 0)
			__atomic_fetch_add(&ws->packets, 1, __ATOMIC_RELAXED);
		return rc;
	}
	case MFD_JOB_EOS: {
		struct mfd__wstate *ws = &s->ws[w];
		uint8_t meta[MFD_EOS_REC_LEN];
		mfd__put64(meta, ws->seq);
		int rc = mfd__send_packet(s->chan[w + 1], &ws->seq, MFD_PKT_EOS, j->round, meta,
					  sizeof(meta), &s->errbox);
		if (rc == 0)
			__atomic_fetch_add(&ws->packets, 1, __ATOMIC_RELAXED);
		return rc;
	}
	case MFD_JOB_DIGEST:
		return mfd__job_digest(s, j);
	}
	return -EINVAL;
}

/* ---- main channel -------------------------------------------------------------------------- */

struct main_reader {
	struct mfd_session *s;
	pthread_t thread;
	struct mfd__status_rec commit;	/* written by the reader, read after join */
	bool got_commit;		/* written by the reader, read after join */
};

static void *main_reader_fn(void *arg)
{
	struct main_reader *r = arg;
	struct mfd_session *s = r->s;
	uint8_t *meta = malloc(MFD_PROTO_MAX_META);
	struct mfd_error e;
	mfd_error_clear(&e);
	if (!meta) {
		mfd__session_fail(s, -ENOMEM, 0, "main channel reader");
		return NULL;
	}
	/* While the main channel is quiet (rounds, switchover, digests), ping it so the destination
	 * can tell a slow migration from a vanished source.  The period hardly depends on our own
	 * timeout: the destination's is what matters, and it may be shorter (or ours 0).  A 32-byte
	 * packet four times a second costs nothing. */
	int ping_ms = s->timeout_ms > 0 ? MFD_MIN(MFD_MAX(s->timeout_ms / 3, 1), 250) : 250;
	for (;;) {
		struct mfd__pkt_hdr h;
		int w = mfd__wait_readable(s->chan[0]->fd, ping_ms, -1);
		if (w == -ETIMEDOUT) {
			int rc = mfd__session_send_main(s, MFD_PKT_PING, NULL, 0);
			if (rc == 0)
				continue;
			/* A half-written PING would tear the stream: this is a failure like any. */
			mfd__session_fail(s, rc, 0, "sending a keepalive");
			break;
		}
		int rc = mfd__recv_packet(s->chan[0], &s->main_rx_seq, &h, meta, &e);
		if (rc) {
			mfd__errbox_setv(&s->errbox, &e);
			mfd__session_fail(s, rc, 0, "main channel");
			break;
		}
		if (h.type == MFD_PKT_ERROR) {
			int code;
			char msg[MFD_ERROR_MSG_MAX];
			if (mfd__errrec_decode(meta, h.meta_len, &code, msg, sizeof(msg), 0, &e) == 0) {
				mfd_error_clear(&e);
				mfd__err_set_peer(&e, code, "destination failed", msg);
				/* The destination's reason is the root cause of whatever this side saw. */
				mfd__session_peer_error(s, &e);
			} else {
				mfd__errbox_setv(&s->errbox, &e);
			}
			mfd__session_fail(s, e.code, 0, "destination error");
			break;
		}
		if (h.type == MFD_PKT_COMMIT) {
			if (mfd__status_decode(meta, h.meta_len, &r->commit, 0, &e)) {
				mfd__errbox_setv(&s->errbox, &e);
				mfd__session_fail(s, e.code, 0, "commit record");
			} else {
				r->got_commit = true;
			}
			break;
		}
		mfd__session_fail(s, MFD_ETYPE, 0, "unexpected packet type %u from the destination",
				  h.type);
		break;
	}
	free(meta);
	return NULL;
}

static int send_block_table(struct mfd_session *s, uint8_t *meta, struct mfd_error *err)
{
	struct mfd__block_desc *d = calloc(s->ram.n, sizeof(*d));
	if (!d)
		return mfd__err_set(err, -ENOMEM, 0, "block table");
	for (uint32_t i = 0; i < s->ram.n; i++) {
		memcpy(d[i].name, s->ram.blocks[i].name, sizeof(d[i].name));
		d[i].length = s->ram.blocks[i].len;
		d[i].page_size = s->ram.blocks[i].page_size;
	}
	uint32_t len = mfd__blocks_encode(meta, d, s->ram.n);
	free(d);
	int rc = mfd__session_send_main(s, MFD_PKT_BLOCKS, meta, len);
	if (rc)
		return mfd__err_set(err, rc, 0, "sending the block table");

	struct mfd__pkt_hdr h;
	if ((rc = mfd__recv_packet(s->chan[0], &s->main_rx_seq, &h, meta, err)))
		return rc;
	if (h.type == MFD_PKT_ERROR) {
		int code;
		char msg[MFD_ERROR_MSG_MAX];
		if ((rc = mfd__errrec_decode(meta, h.meta_len, &code, msg, sizeof(msg), 0, err)))
			return rc;
		return mfd__err_set_peer(err, code, "destination refused the block table", msg);
	}
	if (h.type != MFD_PKT_BLOCKS_ACK)
		return mfd__err_set(err, MFD_ETYPE, 0, "expected the block table ack, got type %u",
				    h.type);
	struct mfd__status_rec ack;
	if ((rc = mfd__status_decode(meta, h.meta_len, &ack, 0, err)))
		return rc;
	if (ack.status)
		return mfd__err_set(err, ack.status, 0, "destination refused the block table");
	return 0;
}

/* ---- rounds ------------------------------------------------------------------------------- */

static uint64_t data_bytes_sent(struct mfd_session *s)
{
	uint64_t n = 0;
	for (unsigned i = 1; i < s->nchan; i++)
		n += __atomic_load_n(&s->chan[i]->bytes_out, __ATOMIC_RELAXED);
	return n;
}

/* Queue a full pass over every block (the first round, or the only pass without a tracker). */
static int submit_full_pass(struct mfd_session *s, uint32_t round)
{
	int rc = 0;
	for (uint32_t b = 0; b < s->ram.n && rc == 0; b++) {
		const struct mfd__block *blk = &s->ram.blocks[b];
		for (uint64_t p = 0; p < blk->npages && rc == 0; p += s->batch_pages) {
			struct mfd__job j = { .kind = MFD_JOB_RAM, .block = b, .round = round, .first = p,
					      .count = MFD_MIN(s->batch_pages, blk->npages - p) };
			rc = mfd__pool_submit(s->pool, &j);
		}
	}
	return rc;
}

/* Queue the dirty pages: spans of the bitmap holding up to batch_pages set bits each. */
static int submit_dirty(struct mfd_session *s, uint32_t round)
{
	int rc = 0;
	for (uint32_t b = 0; b < s->ram.n && rc == 0; b++) {
		const uint64_t *map = s->dirty[b];
		uint64_t n = s->ram.blocks[b].npages;
		uint64_t p = mfd__bitmap_next_set(map, n, 0);
		while (p < n && rc == 0) {
			uint64_t first = p, count = 0, last = p;
			while (p < n && count < s->batch_pages) {
				last = p;
				count++;
				p = mfd__bitmap_next_set(map, n, p + 1);
			}
			struct mfd__job j = { .kind = MFD_JOB_RAM_DIRTY, .block = b, .round = round,
					      .first = first, .count = last - first + 1 };
			rc = mfd__pool_submit(s->pool, &j);
		}
	}
	return rc;
}

static int broadcast(struct mfd_session *s, uint32_t kind, uint32_t round)
{
	int rc = 0;
	for (unsigned w = 0; w + 1 < s->nchan && rc == 0; w++) {
		struct mfd__job j = { .kind = kind, .round = round };
		rc = mfd__pool_submit_to(s->pool, w, &j);
	}
	return rc;
}

static int send_devices(struct mfd_session *s, uint8_t *meta, struct mfd_error *err)
{
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
		uint32_t ml = mfd__device_meta_encode(meta, &id);
		uint8_t hdr[MFD_PKT_HDR_LEN];
		pthread_mutex_lock(&s->main_tx_lock);
		uint64_t sq = __atomic_fetch_add(&s->main_tx_seq, 1, __ATOMIC_RELAXED);
		struct mfd__pkt_hdr h = { .type = MFD_PKT_DEVICE, .seq = sq, .meta_len = ml,
					  .data_len = (uint32_t)n };
		mfd__pkt_hdr_encode(hdr, &h, meta);
		struct iovec iov[3] = { { hdr, sizeof(hdr) }, { meta, ml }, { buf, (size_t)n } };
		rc = mfd__chan_writev(s->chan[0], iov, n ? 3 : 2);
		pthread_mutex_unlock(&s->main_tx_lock);
		if (rc)
			mfd__err_set(err, rc, 0, "sending device %s.%u", d->name, d->instance);
		else
			__atomic_fetch_add(&s->st_device_bytes, (uint64_t)n, __ATOMIC_RELAXED);
	}
	free(buf);
	return rc;
}

/* A round on the wire: its pages, then a SYNC marker on every data channel. */
static int submit_round(struct mfd_session *s, uint32_t r)
{
	int rc = r == 0 ? submit_full_pass(s, r) : submit_dirty(s, r);
	return rc ? rc : broadcast(s, MFD_JOB_SYNC, r);
}

static const struct mfd__rounds_ops stream_rounds = {
	.submit = submit_round,
	.progress = data_bytes_sent,
	.verb = "sending",
};

int mfd__outgoing_run(struct mfd_session *s, struct mfd_error *err)
{
	int rc;
	struct mfd_error e;
	mfd_error_clear(&e);
	bool live = s->track_kind != MFD_TRACK_NONE, stopped = false, reader_started = false;
	uint64_t t_stop = 0;
	uint32_t round = 0;
	struct main_reader reader = { .s = s };
	struct mfd__end_rec end = { 0 };
	pthread_mutex_lock(&s->lock);
	bool ready = s->main_ready;
	pthread_mutex_unlock(&s->lock);
	if (!ready)
		return mfd__err_set(err, MFD_ESTATE, -1, "connect (successfully) before run");
	uint8_t *meta = malloc(MFD_PROTO_MAX_META);
	if (!meta)
		return mfd__err_set(err, -ENOMEM, -1, "buffers");
	if ((rc = send_block_table(s, meta, &e)))
		goto out;
	unsigned nw = s->nchan - 1;
	if ((rc = mfd__session_alloc_workers(s, nw)) ||
	    (rc = mfd__session_start_pool(s, nw, out_job))) {
		mfd__err_set(&e, rc, -1, "starting workers");
		goto out;
	}
	if ((rc = -pthread_create(&reader.thread, NULL, main_reader_fn, &reader))) {
		mfd__err_set(&e, rc, -1, "starting the main channel reader");
		goto out;
	}
	reader_started = true;
	if (live && (rc = mfd__rounds_start_tracking(s, &e)))
		goto out;
	__atomic_store_n(&s->t_setup_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);

	if (live) {
		if ((rc = mfd__rounds_precopy(s, &stream_rounds, &round, &e)))
			goto out;
		/* Switchover: stop the guest, take the last dirty pages, send them and the devices. */
		if ((rc = mfd__rounds_stop(s, &t_stop, &stopped, &e)))
			goto out;
		__atomic_store_n(&s->st_rounds, (uint64_t)round + 1, __ATOMIC_RELAXED);
		rc = submit_dirty(s, round);
	} else {
		rc = submit_full_pass(s, 0);
	}
	if (rc == 0 && s->devices.n)
		rc = send_devices(s, meta, &e);
	if (rc == 0)
		rc = broadcast(s, MFD_JOB_EOS, round);
	if (rc == 0)
		rc = mfd__pool_sync(s->pool);
	if (rc == 0 && s->verify) {
		uint32_t *order = malloc(s->ram.n * sizeof(*order));
		if (!order) {
			rc = mfd__session_fail(s, -ENOMEM, -1, "digest");
		} else {
			for (uint32_t i = 0; i < s->ram.n; i++)
				order[i] = i;
			rc = mfd__session_digest(s, order, s->ram.n);
			free(order);
		}
		end.digest = __atomic_load_n(&s->digest, __ATOMIC_RELAXED);
		end.flags = MFD_FEAT_VERIFY;
	}
	if (rc == 0) {
		for (unsigned w = 0; w < nw; w++) {
			end.normal_pages += s->ws[w].normal_pages;
			end.zero_pages += s->ws[w].zero_pages;
		}
		end.rounds = round;
		mfd__end_encode(meta, &end);
		rc = mfd__session_send_main(s, MFD_PKT_END, meta, MFD_END_REC_LEN);
		if (rc)
			mfd__err_set(&e, rc, 0, "sending END");
	}
out:
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	if (rc)
		mfd__session_fail(s, rc, -1, "migration");	/* unblocks the reader */
	if (reader_started)
		pthread_join(reader.thread, NULL);
	/* Once the destination committed, the guest is its: a cancel or a teardown error that came
	 * after must not make us report failure (and resume a second copy of the guest here). */
	if (reader.got_commit && reader.commit.status == 0 &&
	    (!s->verify || reader.commit.digest == end.digest)) {
		mfd__session_commit(s);
		rc = 0;
	} else if (rc == 0) {
		rc = mfd__errbox_code(&s->errbox);
	}
	if (rc == 0 && !reader.got_commit)
		rc = mfd__session_fail(s, MFD_ECLOSED, 0, "no commit from the destination");
	if (rc == 0 && reader.commit.status)
		rc = mfd__session_fail(s, reader.commit.status, 0, "destination did not commit");
	if (rc == 0 && s->verify) {
		if (reader.commit.digest != end.digest)
			rc = mfd__session_fail(s, MFD_EVERIFY, -1,
					       "source digest %016llx, destination %016llx",
					       (unsigned long long)end.digest,
					       (unsigned long long)reader.commit.digest);
		else
			__atomic_store_n(&s->verified, true, __ATOMIC_RELAXED);
	}
	if (stopped && rc == 0)
		__atomic_store_n(&s->st_downtime_ms, (mfd__now_ns() - t_stop) / 1000000, __ATOMIC_RELAXED);
	/* Whatever happened, the source goes on: tracking off, throttle lifted, guest resumed. */
	if (s->tracker)
		s->tracker->ops->stop(s->tracker);
	mfd__rounds_set_throttle(s, 0);
	if (stopped && rc && s->cb.resume)
		s->cb.resume(s->cb.opaque);
	free(meta);
	return rc;
}
