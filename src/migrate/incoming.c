/* migrate/incoming — the destination side of a migration.
 *
 * Channels connect in any order.  Each is accepted, sends its 64-byte hello and gets a reply;
 * the first hello fixes the session (id, channel count, page size, features), and every later
 * one must match it.  The main channel then carries the block table, which must match the blocks
 * registered here (names, lengths, page sizes).  One worker per data channel reads packets:
 * every field is validated against the table before use, and page data is read straight into
 * destination memory.  A SYNC marker ends a round on its channel; the worker then waits until
 * every channel has reached the same marker, so no page of round r+1 is written before every
 * copy of round r has landed (the ordering guarantee: a stale copy never overwrites a newer one).
 * Device states arrive on the main channel and go to their load callbacks (bounded in size).
 * END on the main channel and an end-of-stream packet on every data channel close the stream;
 * the totals and round counts are checked, the digest compared when verify was negotiated, and
 * only then is COMMIT sent.  Any failure sends an ERROR record and leaves the session failed;
 * the memory then holds a partial migration the embedder must discard. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "core/io.h"
#include "migrate/session.h"

static void set_rcv_timeout(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void reply(int fd, int status, uint64_t features)
{
	uint8_t b[MFD_ACCEPT_LEN];
	struct mfd__accept a = { .version = MFD_PROTO_VERSION, .status = status, .features = features };
	mfd__accept_encode(b, &a);
	(void)mfd__io_write_fd(fd, b, sizeof(b));	/* best effort when refusing */
}

/* Check one hello against the session fixed by the first; register the channel. */
static int admit(struct mfd_session *s, int fd, unsigned *have, struct mfd_error *err)
{
	uint8_t b[MFD_HELLO_LEN];
	struct mfd__hello h;
	int rc;
	if (s->timeout_ms)
		set_rcv_timeout(fd, s->timeout_ms);
	/* Published while we read its hello, so a failure or cancel can shut it down (a client
	 * that connects and says nothing must not hold the session). */
	pthread_mutex_lock(&s->lock);
	s->admit_fd = fd;
	bool canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	rc = canceled ? MFD_ECANCELED : mfd__wait_readable(fd, s->timeout_ms, s->cancel_fd);
	if (rc == 0)
		rc = mfd__io_read_fd(fd, b, sizeof(b));
	pthread_mutex_lock(&s->lock);
	s->admit_fd = -1;
	canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	if (rc && canceled)
		rc = MFD_ECANCELED;
	if (rc) {
		if (rc == -EAGAIN)
			rc = -ETIMEDOUT;
		mfd__err_set(err, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, -1, "reading a channel handshake");
		goto refuse;
	}
	if ((rc = mfd__hello_decode(b, sizeof(b), &h, err)))
		goto refuse;
	if (*have == 0) {
		memcpy(s->session_id, h.session, MFD_UUID_LEN);
		if (h.page_size != s->ram.page_size) {
			rc = mfd__err_set(err, MFD_EPAGESIZE, h.channel_id,
					  "source pages are %u bytes, ours %u", h.page_size,
					  s->ram.page_size);
			goto refuse;
		}
		pthread_mutex_lock(&s->lock);
		s->nchan = h.channel_count;
		pthread_mutex_unlock(&s->lock);
		s->features = h.features;
		/* Our configuration bounds what a source may make us allocate. */
		if (h.channel_count > s->channels + 1u) {
			rc = mfd__err_set(err, MFD_ECHANCOUNT, h.channel_id,
					  "source uses %u data channels, we accept up to %u",
					  h.channel_count - 1u, s->channels);
			goto refuse;
		}
		if (h.batch_pages > s->batch_pages) {
			rc = mfd__err_set(err, MFD_EPAGES, h.channel_id,
					  "source batches %u pages, we accept up to %u", h.batch_pages,
					  s->batch_pages);
			goto refuse;
		}
		s->batch_pages = h.batch_pages;
	} else {
		if (memcmp(h.session, s->session_id, MFD_UUID_LEN)) {
			char a[37], e[37];
			mfd__uuid_format(h.session, a);
			mfd__uuid_format(s->session_id, e);
			rc = mfd__err_set(err, MFD_ESESSION, h.channel_id, "session %s, expected %s", a, e);
			goto refuse;
		}
		if (h.channel_count != s->nchan) {
			rc = mfd__err_set(err, MFD_ECHANCOUNT, h.channel_id, "%u channels, expected %u",
					  h.channel_count, s->nchan);
			goto refuse;
		}
		if (h.page_size != s->ram.page_size || h.features != s->features ||
		    h.batch_pages != s->batch_pages) {
			rc = mfd__err_set(err, MFD_EFEATURE, h.channel_id,
					  "handshake parameters differ between channels");
			goto refuse;
		}
	}
	if (s->chan[h.channel_id]) {
		rc = mfd__err_set(err, MFD_EDUPCHAN, h.channel_id, "channel %u connected twice",
				  h.channel_id);
		goto refuse;
	}
	reply(fd, 0, h.features);
	if ((rc = mfd__session_add_chan(s, h.channel_id, fd)))
		return mfd__err_set(err, rc, h.channel_id, "channel");
	/* The handshake went over the bare fd: count it like the source does. */
	__atomic_fetch_add(&s->chan[h.channel_id]->bytes_in, MFD_HELLO_LEN, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->chan[h.channel_id]->bytes_out, MFD_ACCEPT_LEN, __ATOMIC_RELAXED);
	/* The main channel keeps its timeouts: the source pings it while it is quiet, so silence
	 * for timeout_ms means the source is gone or stuck, and the session fails (which also frees
	 * the data channels' receivers).  Data channels may idle between rounds: no timeout. */
	if (h.channel_id != 0)
		set_rcv_timeout(fd, 0);
	(*have)++;
	return 0;
refuse:
	reply(fd, rc, 0);
	close(fd);
	return rc;
}

static int accept_channels(struct mfd_session *s, struct mfd_error *err)
{
	unsigned have = 0;
	int next_pending = 0;
	do {
		int fd;
		if (s->pending_fds.nfds) {
			if (next_pending >= s->pending_fds.nfds)
				return mfd__err_set(err, MFD_ECHANCOUNT, -1,
						    "%d fds given, the source uses %u channels",
						    s->pending_fds.nfds, s->nchan);
			fd = s->pending_fds.fds[next_pending];
			s->pending_fds.fds[next_pending++] = -1;	/* owned by the session now */
		} else if (s->listen_fd >= 0) {
			/* The first channel may take as long as the source needs to decide to
			 * migrate (a destination waits, cancelable); once one arrived, the rest of
			 * the handshake is bounded by the timeout. */
			fd = mfd__sock_accept(s->listen_fd, have ? s->timeout_ms : 0, s->cancel_fd, err);
			if (fd < 0)
				return fd;
		} else {
			return mfd__err_set(err, MFD_ESTATE, -1, "listen before run");
		}
		int rc = admit(s, fd, &have, err);
		if (rc)
			return rc;
		if (mfd__session_canceled(s))
			return mfd__err_set(err, MFD_ECANCELED, -1, "waiting for channels");
	} while (have < s->nchan);
	pthread_mutex_lock(&s->lock);
	s->main_ready = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Match the source's block table against ours: same names, lengths and page sizes. */
static int match_blocks(struct mfd_session *s, const uint8_t *meta, uint32_t len, struct mfd_error *err)
{
	struct mfd__block_desc *d = calloc(MFD_MAX_BLOCKS, sizeof(*d));
	uint32_t n = 0;
	int rc;
	if (!d)
		return mfd__err_set(err, -ENOMEM, 0, "block table");
	if ((rc = mfd__blocks_decode(meta, len, d, &n, err)))
		goto out;
	if (n != s->ram.n) {
		rc = mfd__err_set(err, MFD_EBLOCKTABLE, 0, "source has %u blocks, destination %u", n,
				  s->ram.n);
		goto out;
	}
	s->map = calloc(n, sizeof(*s->map));
	s->src_len = calloc(n, sizeof(*s->src_len));
	if (!s->map || !s->src_len) {
		rc = mfd__err_set(err, -ENOMEM, 0, "block map");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		int k = mfd__ram_find(&s->ram, d[i].name);
		if (k < 0) {
			rc = mfd__err_set(err, MFD_EBLOCKTABLE, 0, "no block '%s' here", d[i].name);
			goto out;
		}
		const struct mfd__block *b = &s->ram.blocks[k];
		if (b->len != d[i].length || b->page_size != d[i].page_size) {
			rc = mfd__err_set(err, MFD_EBLOCKTABLE, 0,
					  "block '%s': source %llu bytes in %u-byte pages, here %llu in %u",
					  d[i].name, (unsigned long long)d[i].length, d[i].page_size,
					  (unsigned long long)b->len, b->page_size);
			goto out;
		}
		s->map[i] = (uint32_t)k;
		s->src_len[i] = d[i].length;
	}
	s->limits = (struct mfd__ram_limits){ .nblocks = n, .page_size = s->ram.page_size,
					      .max_pages = s->batch_pages, .block_len = s->src_len };
out:
	free(d);
	return rc;
}

/* ---- data channel receivers ------------------------------------------------------------ */

static int recv_ram(struct mfd_session *s, unsigned w, const struct mfd__pkt_hdr *h)
{
	struct mfd__wstate *ws = &s->ws[w];
	struct mfd__chan *c = s->chan[w + 1];
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__ram_meta_decode(ws->meta, h->meta_len, h->data_len, &s->limits, &ws->batch,
				      c->id, &e);
	if (rc) {
		mfd__errbox_setv(&s->errbox, &e);
		return rc;
	}
	if (h->round != ws->round) {
		mfd__errbox_set(&s->errbox, MFD_EROUND, c->id, "RAM packet %llu of round %u in round %u",
				(unsigned long long)h->seq, h->round, ws->round);
		return MFD_EROUND;
	}
	struct mfd__block *b = &s->ram.blocks[s->map[ws->batch.block_id]];
	uint32_t ps = b->page_size;
	int n = mfd__ram_batch_iov(&ws->batch, b->host, ps, ws->iov);
	if (n && (rc = mfd__chan_readv(c, ws->iov, n))) {
		mfd__errbox_set(&s->errbox, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, c->id,
				"reading the pages of packet %llu", (unsigned long long)h->seq);
		return rc;
	}
	mfd__ram_batch_apply_zero(&ws->batch, b->host, ps, b->received);
	if (b->received)
		mfd__ram_batch_mark_received(&ws->batch, ps, b->received);
	__atomic_fetch_add(&ws->normal_pages, ws->batch.normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->zero_pages, ws->batch.zero, __ATOMIC_RELAXED);
	return 0;
}

static int recv_loop(struct mfd_session *s, unsigned w)
{
	struct mfd__wstate *ws = &s->ws[w];
	struct mfd__chan *c = s->chan[w + 1];
	struct mfd_error e;
	for (;;) {
		uint8_t hdr[MFD_PKT_HDR_LEN];
		struct mfd__pkt_hdr h;
		int rc;
		mfd_error_clear(&e);
		if ((rc = mfd__chan_read(c, hdr, sizeof(hdr)))) {
			mfd__err_set(&e, rc, c->id, "before the end of stream (%llu packets received)",
				     (unsigned long long)ws->seq);
			goto fail;
		}
		if ((rc = mfd__pkt_hdr_decode(hdr, &h, c->id, &e)))
			goto fail;
		if ((rc = mfd__chan_read(c, ws->meta, h.meta_len))) {
			mfd__err_set(&e, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, c->id, "reading packet meta");
			goto fail;
		}
		if ((rc = mfd__pkt_check(hdr, ws->meta, h.meta_len, c->id, &e)))
			goto fail;
		if (h.seq != ws->seq) {
			rc = mfd__err_set(&e, MFD_ESEQ, c->id, "packet %llu, expected %llu",
					  (unsigned long long)h.seq, (unsigned long long)ws->seq);
			goto fail;
		}
		ws->seq++;
		__atomic_fetch_add(&ws->packets, 1, __ATOMIC_RELAXED);
		switch (h.type) {
		case MFD_PKT_RAM:
			if ((rc = recv_ram(s, w, &h)))
				return rc;
			break;
		case MFD_PKT_SYNC:
			if (h.meta_len != 0) {
				rc = mfd__err_set(&e, MFD_ELENGTH, c->id, "SYNC with %u bytes of meta",
						  h.meta_len);
				goto fail;
			}
			if (h.round != ws->round) {
				rc = mfd__err_set(&e, MFD_EROUND, c->id, "SYNC of round %u in round %u",
						  h.round, ws->round);
				goto fail;
			}
			/* Ordering: nobody starts round r+1 before every channel finished round r. */
			if (!s->knobs.no_barrier && mfd__barrier_wait(&s->barrier))
				return mfd__errbox_code(&s->errbox) ? mfd__errbox_code(&s->errbox)
								    : MFD_ECANCELED;
			ws->round++;
			break;
		case MFD_PKT_EOS:
			if (h.round != ws->round) {
				rc = mfd__err_set(&e, MFD_EROUND, c->id, "end of stream in round %u, "
						  "channel in round %u", h.round, ws->round);
				goto fail;
			}
			if (h.meta_len != MFD_EOS_REC_LEN) {
				rc = mfd__err_set(&e, MFD_ELENGTH, c->id, "end of stream of %u bytes",
						  h.meta_len);
				goto fail;
			}
			if (mfd__get64(ws->meta) != h.seq) {
				rc = mfd__err_set(&e, MFD_ECOUNT, c->id,
						  "source sent %llu packets, %llu arrived",
						  (unsigned long long)mfd__get64(ws->meta),
						  (unsigned long long)h.seq);
				goto fail;
			}
			ws->eos = true;
			/* A channel that ended no longer holds the others at later markers; a source
			 * that ends channels at different rounds is caught by END's round count. */
			mfd__barrier_leave(&s->barrier);
			return 0;
		default:
			rc = mfd__err_set(&e, MFD_ETYPE, c->id, "packet type %u on a data channel", h.type);
			goto fail;
		}
	}
fail:
	mfd__errbox_setv(&s->errbox, &e);
	return e.code;
}

static int in_job(void *owner, unsigned w, void *job)
{
	struct mfd_session *s = owner;
	const struct mfd__job *j = job;
	switch (j->kind) {
	case MFD_JOB_RECV:
		return recv_loop(s, w);
	case MFD_JOB_DIGEST:
		return mfd__job_digest(s, j);
	}
	return -EINVAL;
}

/* ---- the main channel ---------------------------------------------------------------------- */

/* A device's state: its (bounded) bytes go to its load callback. */
static int load_device(struct mfd_session *s, const struct mfd__pkt_hdr *h, const uint8_t *meta,
		       uint64_t *total, struct mfd_error *err)
{
	struct mfd__device_id id;
	int rc = mfd__device_meta_decode(meta, h->meta_len, &id, err);
	if (rc)
		return rc;
	struct mfd__device *d = mfd__devices_find(&s->devices, id.name, id.instance);
	if (!d)
		return mfd__err_set(err, MFD_EDEVICE, 0, "no device %s.%u here", id.name, id.instance);
	if (d->loaded)
		return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u sent twice", id.name, id.instance);
	if (id.version > d->version)
		return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u: state version %u, we load up to %u",
				    id.name, id.instance, id.version, d->version);
	if (h->data_len > s->device_max || *total + h->data_len > s->device_max)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device %s.%u: %u bytes over the %llu-byte bound",
				    id.name, id.instance, h->data_len,
				    (unsigned long long)s->device_max);
	uint8_t *buf = malloc(h->data_len ? h->data_len : 1);
	if (!buf)
		return mfd__err_set(err, -ENOMEM, 0, "device %s.%u state", id.name, id.instance);
	if ((rc = mfd__chan_read(s->chan[0], buf, h->data_len))) {
		free(buf);
		return mfd__err_set(err, rc == MFD_ECLOSED ? MFD_ETRUNC : rc, 0, "reading device %s.%u",
				    id.name, id.instance);
	}
	*total += h->data_len;
	__atomic_fetch_add(&s->st_device_bytes, h->data_len, __ATOMIC_RELAXED);
	rc = d->ops.load ? d->ops.load(d->opaque, buf, h->data_len, id.version) : MFD_EDEVICE;
	free(buf);
	if (rc)
		return mfd__err_set(err, rc < 0 ? rc : MFD_EDEVICE, -1, "device %s.%u refused its state",
				    id.name, id.instance);
	d->loaded = true;
	return 0;
}

/* Read the next main-channel packet; an ERROR record from the source becomes our error. */
static int recv_main(struct mfd_session *s, struct mfd__pkt_hdr *h, uint8_t *meta, uint8_t want,
		     struct mfd_error *err)
{
	int rc;
	do {	/* PINGs only keep the idle timeout from firing */
		struct mfd_error e;
		mfd_error_clear(&e);
		rc = mfd__recv_packet(s->chan[0], &s->main_rx_seq, h, meta, &e);
		if (rc == -ETIMEDOUT)
			return mfd__err_set(err, rc, 0, "source silent for %d ms", s->timeout_ms);
		if (rc) {
			mfd__err_copy(err, &e);
			return rc;
		}
		if (h->round != 0)
			return mfd__err_set(err, MFD_EROUND, 0, "main-channel packet with round %u",
					    h->round);
	} while (h->type == MFD_PKT_PING && h->meta_len == 0);
	if (h->type == MFD_PKT_ERROR) {
		int code;
		char msg[MFD_ERROR_MSG_MAX];
		if ((rc = mfd__errrec_decode(meta, h->meta_len, &code, msg, sizeof(msg), 0, err)))
			return rc;
		/* The source's reason is the root cause: it replaces the end-of-stream a data
		 * channel may already have reported as the source went down. */
		struct mfd_error pe;
		mfd_error_clear(&pe);
		mfd__err_set_peer(&pe, code, "source failed", msg);
		mfd__session_peer_error(s, &pe);
		return mfd__err_set_peer(err, code, "source failed", msg);
	}
	if (want && h->type != want)
		return mfd__err_set(err, MFD_ETYPE, 0, "packet type %u, expected %u", h->type, want);
	return 0;
}

int mfd__incoming_run(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd_error e;
	struct mfd__pkt_hdr h;
	int rc;
	mfd_error_clear(&e);
	uint8_t *meta = malloc(MFD_PROTO_MAX_META);
	if (!meta)
		return mfd__err_set(err, -ENOMEM, -1, "buffers");
	if ((rc = accept_channels(s, &e)))
		goto out;
	if ((rc = recv_main(s, &h, meta, MFD_PKT_BLOCKS, &e)) ||
	    (rc = match_blocks(s, meta, h.meta_len, &e)))
		goto out;
	if ((rc = mfd__ram_alloc_received(&s->ram))) {
		mfd__err_set(&e, rc, -1, "received bitmaps");
		goto out;
	}
	unsigned nw = s->nchan - 1;
	mfd__barrier_init(&s->barrier, nw);
	pthread_mutex_lock(&s->lock);
	s->barrier_ready = true;	/* the failure path may abort it from now on */
	pthread_mutex_unlock(&s->lock);
	if ((rc = mfd__session_alloc_workers(s, nw)) ||
	    (rc = mfd__session_start_pool(s, nw, in_job))) {
		mfd__err_set(&e, rc, -1, "starting workers");
		goto out;
	}
	struct mfd__status_rec ack = { 0 };
	mfd__status_encode(meta, &ack);
	if ((rc = mfd__session_send_main(s, MFD_PKT_BLOCKS_ACK, meta, MFD_STATUS_REC_LEN))) {
		mfd__err_set(&e, rc, 0, "sending the block table ack");
		goto out;
	}
	__atomic_store_n(&s->t_setup_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);
	for (unsigned w = 0; w < nw && rc == 0; w++) {
		struct mfd__job j = { .kind = MFD_JOB_RECV };
		rc = mfd__pool_submit_to(s->pool, w, &j);
	}
	if (rc)
		goto out;

	struct mfd__end_rec end;
	uint64_t device_total = 0;
	for (;;) {
		if ((rc = recv_main(s, &h, meta, 0, &e)))
			goto out;
		if (h.type == MFD_PKT_DEVICE) {
			if ((rc = load_device(s, &h, meta, &device_total, &e)))
				goto out;
			continue;
		}
		if (h.type != MFD_PKT_END) {
			rc = mfd__err_set(&e, MFD_ETYPE, 0, "packet type %u, expected END or DEVICE",
					  h.type);
			goto out;
		}
		if ((rc = mfd__end_decode(meta, h.meta_len, &end, &e)))
			goto out;
		/* A source that sent END has written every data channel's end of stream too: from
		 * now on a silent data channel is a dead one. */
		for (unsigned i = 1; s->timeout_ms && i < s->nchan; i++)
			set_rcv_timeout(s->chan[i]->fd, s->timeout_ms);
		if (end.flags != (s->features & MFD_FEAT_VERIFY)) {
			rc = mfd__err_set(&e, MFD_EFEATURE, 0, "END flags 0x%x, negotiated 0x%llx",
					  end.flags, (unsigned long long)s->features);
			goto out;
		}
		break;
	}
	if ((rc = mfd__pool_sync(s->pool)))
		goto out;
	uint64_t normal = 0, zero = 0;
	for (unsigned w = 0; w < nw; w++) {
		normal += s->ws[w].normal_pages;
		zero += s->ws[w].zero_pages;
	}
	for (unsigned w = 0; w < nw; w++) {
		if (s->ws[w].round != end.rounds) {
			rc = mfd__err_set(&e, MFD_ECOUNT, (int)w + 1, "channel ended in round %u of %u",
					  s->ws[w].round, end.rounds);
			goto out;
		}
	}
	for (uint32_t i = 0; i < s->devices.n; i++) {
		if (!s->devices.v[i].loaded) {
			rc = mfd__err_set(&e, MFD_EDEVICE, -1, "no state arrived for device %s.%u",
					  s->devices.v[i].name, s->devices.v[i].instance);
			goto out;
		}
	}
	if (normal != end.normal_pages || zero != end.zero_pages) {
		rc = mfd__err_set(&e, MFD_ECOUNT, -1,
				  "source sent %llu+%llu pages, %llu+%llu arrived",
				  (unsigned long long)end.normal_pages, (unsigned long long)end.zero_pages,
				  (unsigned long long)normal, (unsigned long long)zero);
		goto out;
	}
	struct mfd__status_rec commit = { 0 };
	if (s->features & MFD_FEAT_VERIFY) {
		if ((rc = mfd__session_digest(s, s->map, s->ram.n)))
			goto out;
		commit.digest = __atomic_load_n(&s->digest, __ATOMIC_RELAXED);
		if (commit.digest != end.digest) {
			rc = mfd__err_set(&e, MFD_EVERIFY, -1, "source digest %016llx, ours %016llx",
					  (unsigned long long)end.digest,
					  (unsigned long long)commit.digest);
			goto out;
		}
		__atomic_store_n(&s->verified, true, __ATOMIC_RELAXED);
	}
	mfd__status_encode(meta, &commit);
	if ((rc = mfd__session_send_main(s, MFD_PKT_COMMIT, meta, MFD_STATUS_REC_LEN)))
		mfd__err_set(&e, rc, 0, "sending COMMIT");
	else
		mfd__session_commit(s);	/* the source completes on this: so do we, whatever comes */
out:
	free(meta);
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	return rc;
}
