/* migrate/incoming — the destination side of a migration.
 *
 * Channels connect in any order and are admitted by admit.c: each sends its 64-byte hello and
 * gets a reply; the channels of one session (id, channel count, page size, features, codec,
 * batch size) become this session's once all of them are there, and strangers are refused
 * without disturbing it.  The main channel then carries the block table, which must
 * match the blocks registered here (names, lengths, page sizes).  One worker per data channel
 * runs a receiver (stream.c): every packet is validated before use and handed to the payload its
 * type names; RAM data is read straight into destination memory, and SYNC markers keep the
 * ordering guarantee (no page of round r+1 is written before every copy of round r landed).
 * Device states arrive on the main channel and go to their load callbacks (bounded in size).
 * END on the main channel and an end-of-stream packet on every data channel close the stream;
 * the totals and round counts are checked, the digest compared when verify was negotiated, and
 * only then is COMMIT sent.  Any failure sends an ERROR record and leaves the session failed;
 * the memory then holds a partial migration the embedder must discard.
 *
 * Private state (s->priv, struct incoming): the run thread's; `map` and `src_len` are read by
 * the workers through the RAM transfer state, written before they start. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/session.h"

struct incoming {
	struct mfd__listener *listener;
	uint32_t *map;		/* source block id -> local block index */
	uint64_t *src_len;	/* source block id -> length */
	uint8_t *meta;		/* MFD_PROTO_MAX_META bytes */
};

static int incoming_listen(struct mfd_session *s, const char *uri, struct mfd_error *err)
{
	struct mfd__uri u;
	int rc = mfd__uri_parse(uri, &u, err);
	if (rc)
		return rc;
	struct incoming *in = calloc(1, sizeof(*in));
	if (!in)
		return mfd__err_set(err, -ENOMEM, -1, "incoming state");
	if ((rc = mfd__listener_open(&u, &in->listener, err))) {
		free(in);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->priv = in;	/* from now on the options are fixed */
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int incoming_local_uri(struct mfd_session *s, char *buf, size_t len)
{
	struct incoming *in = s->priv;
	return in ? mfd__listener_local_uri(in->listener, buf, len) : MFD_ESTATE;
}

static int accept_channels(struct mfd_session *s, struct mfd_error *err)
{
	struct incoming *in = s->priv;
	int rc = mfd__admit_channels(s, in->listener, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	s->main_ready = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Match the source's block table against ours: same names, lengths and page sizes. */
static int match_blocks(struct mfd_session *s, const uint8_t *meta, uint32_t len, struct mfd_error *err)
{
	struct incoming *in = s->priv;
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
	in->map = calloc(n, sizeof(*in->map));
	in->src_len = calloc(n, sizeof(*in->src_len));
	if (!in->map || !in->src_len) {
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
		in->map[i] = (uint32_t)k;
		in->src_len[i] = d[i].length;
	}
	mfd__ram_xfer_setup(&s->ramx, &s->ram, &s->errbox, &s->rate, false, s->nego.batch_pages);
	s->ramx.map = in->map;
	s->ramx.limits = (struct mfd__ram_limits){ .nblocks = n, .page_size = s->ram.page_size,
						   .max_pages = s->nego.batch_pages,
						   .block_len = in->src_len };
out:
	free(d);
	return rc;
}

/* ---- the device set ---------------------------------------------------------------------------- */

/* Could this destination load what the source will send?  Every source device registered here
 * with a version we load, the same description and fixed size; every device here in the
 * source's set.  Reports the first difference. */
static int match_devices(struct mfd_session *s, const struct mfd__device_desc *d, uint32_t n,
			 struct mfd_error *err)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct mfd__device *l = mfd__devices_find(&s->devices, d[i].name, d[i].instance);
		if (!l)
			return mfd__err_set(err, MFD_EDEVICE, 0, "the source has device %s.%u ('%s'), "
					    "this destination does not", d[i].name, d[i].instance,
					    d[i].config);
		if (d[i].version > l->version)
			return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u: the source saves version "
					    "%u, this destination loads up to %u", d[i].name,
					    d[i].instance, d[i].version, l->version);
		if (strcmp(d[i].config, l->config))
			return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u is '%s' on the source, "
					    "'%s' here", d[i].name, d[i].instance, d[i].config,
					    l->config);
		if (d[i].fixed_size != l->fixed_size)
			return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u: a state of %llu bytes on "
					    "the source, %llu here (0: variable)", d[i].name,
					    d[i].instance, (unsigned long long)d[i].fixed_size,
					    (unsigned long long)l->fixed_size);
	}
	for (uint32_t k = 0; k < s->devices.n; k++) {
		const struct mfd__device *l = &s->devices.v[k];
		uint32_t i = 0;
		while (i < n && (d[i].instance != l->instance || strcmp(d[i].name, l->name)))
			i++;
		if (i == n)
			return mfd__err_set(err, MFD_EDEVICE, 0, "device %s.%u ('%s') is not on the "
					    "source", l->name, l->instance, l->config);
	}
	return 0;
}

/* The DEVICES record that follows BLOCKS, checked against our devices. */
static int receive_device_table(struct mfd_session *s, struct mfd_error *err)
{
	struct incoming *in = s->priv;
	struct mfd__pkt_hdr h;
	uint32_t n;
	int rc = mfd__stream_recv_main(s, "source", &h, in->meta, err);
	if (rc)
		return rc;
	if (h.type != MFD_PKT_DEVICES)
		return mfd__err_set(err, MFD_ETYPE, 0, "packet type %u, expected the device table (%u)",
				    h.type, MFD_PKT_DEVICES);
	if ((rc = mfd__devices_meta_decode(in->meta, h.meta_len, h.data_len, &n, err)))
		return rc;
	struct mfd__device_desc *d = calloc(n ? n : 1, sizeof(*d));
	uint8_t *data = malloc(h.data_len ? h.data_len : 1);
	struct iovec v = { data, h.data_len };
	if (!d || !data)
		rc = mfd__err_set(err, -ENOMEM, 0, "device table");
	else if ((rc = mfd__frame_read_data(s->chan[0], &v, 1, "the device table", err)) == 0 &&
		 (rc = mfd__devices_decode(data, h.data_len, n, d, err)) == 0)
		rc = match_devices(s, d, n, err);
	free(d);
	free(data);
	return rc;
}

/* The block table and (when negotiated) the device table: both are read before either is
 * judged, so that the report names every difference, not only the first one found. */
static int check_setup(struct mfd_session *s, const uint8_t *blocks, uint32_t len,
		       struct mfd_error *err)
{
	struct mfd_error eb, ed;
	mfd_error_clear(&eb);
	mfd_error_clear(&ed);
	int rb = match_blocks(s, blocks, len, &eb), rd = 0;
	if (s->nego.features & MFD_FEAT_DEVICES)
		rd = receive_device_table(s, &ed);
	if (rb && rd)
		return mfd__err_set(err, rd, 0, "%s; and %s", ed.msg, eb.msg);
	mfd__err_copy(err, rb ? &eb : &ed);
	return rb ? rb : rd;
}

/* ---- device states ---------------------------------------------------------------------------- */

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
	if (d->fixed_size && h->data_len != d->fixed_size)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device %s.%u: %u bytes of state, it has a "
				    "fixed %llu", id.name, id.instance, h->data_len,
				    (unsigned long long)d->fixed_size);
	if (h->data_len > s->opt.device_max || *total + h->data_len > s->opt.device_max)
		return mfd__err_set(err, MFD_ELENGTH, 0, "device %s.%u: %u bytes over the %llu-byte bound",
				    id.name, id.instance, h->data_len,
				    (unsigned long long)s->opt.device_max);
	uint8_t *buf = malloc(h->data_len ? h->data_len : 1);
	if (!buf)
		return mfd__err_set(err, -ENOMEM, 0, "device %s.%u state", id.name, id.instance);
	char what[MFD_MAX_NAME + 32];
	snprintf(what, sizeof(what), "device %s.%u", id.name, id.instance);
	struct iovec v = { buf, h->data_len };
	if ((rc = mfd__frame_read_data(s->chan[0], &v, 1, what, err))) {
		free(buf);
		return rc;
	}
	*total += h->data_len;
	MFD_ST_ADD(s, device_bytes, h->data_len);
	rc = d->ops.load ? d->ops.load(d->opaque, buf, h->data_len, id.version) : MFD_EDEVICE;
	free(buf);
	if (rc)
		return mfd__err_set(err, rc < 0 ? rc : MFD_EDEVICE, -1, "device %s.%u refused its state",
				    id.name, id.instance);
	d->loaded = true;
	return 0;
}

/* ---- the run ----------------------------------------------------------------------------------- */

/* After END: everything the source announced arrived, in the rounds it announced. */
static int check_totals(struct mfd_session *s, const struct mfd__end_rec *end, struct mfd_error *err)
{
	for (unsigned w = 0; w < s->nworkers; w++)
		if (s->workers[w].round != end->rounds)
			return mfd__err_set(err, MFD_ECOUNT, (int)w + 1, "channel ended in round %u of %u",
					    s->workers[w].round, end->rounds);
	for (uint32_t i = 0; i < s->devices.n; i++)
		if (!s->devices.v[i].loaded)
			return mfd__err_set(err, MFD_EDEVICE, -1, "no state arrived for device %s.%u",
					    s->devices.v[i].name, s->devices.v[i].instance);
	uint64_t normal = __atomic_load_n(&s->ramx.normal_pages, __ATOMIC_RELAXED);
	uint64_t zero = __atomic_load_n(&s->ramx.zero_pages, __ATOMIC_RELAXED);
	if (normal != end->normal_pages || zero != end->zero_pages)
		return mfd__err_set(err, MFD_ECOUNT, -1, "source sent %llu+%llu pages, %llu+%llu arrived",
				    (unsigned long long)end->normal_pages,
				    (unsigned long long)end->zero_pages, (unsigned long long)normal,
				    (unsigned long long)zero);
	return 0;
}

/* The main channel after setup: device states, then END. */
static int receive_main(struct mfd_session *s, struct mfd__end_rec *end, struct mfd_error *err)
{
	struct incoming *in = s->priv;
	struct mfd__pkt_hdr h;
	uint64_t device_total = 0;
	int rc;
	for (;;) {
		if ((rc = mfd__stream_recv_main(s, "source", &h, in->meta, err)))
			return rc;
		if (h.type == MFD_PKT_END)
			break;
		if (h.type != MFD_PKT_DEVICE)
			return mfd__err_set(err, MFD_ETYPE, 0, "packet type %u, expected END or DEVICE",
					    h.type);
		if ((rc = load_device(s, &h, in->meta, &device_total, err)))
			return rc;
	}
	if ((rc = mfd__end_decode(in->meta, h.meta_len, end, err)))
		return rc;
	/* A source that sent END has written every data channel's end of stream too: from now on
	 * a silent data channel is a dead one. */
	for (unsigned i = 1; i < s->nchan; i++)
		mfd__chan_set_timeout(s->chan[i], s->opt.stall_ms, s->opt.stall_ms);
	if (end->flags != (s->nego.features & MFD_FEAT_VERIFY))
		return mfd__err_set(err, MFD_EFEATURE, 0, "END flags 0x%x, negotiated 0x%llx",
				    end->flags, (unsigned long long)s->nego.features);
	return 0;
}

static int incoming_run(struct mfd_session *s, struct mfd_error *err)
{
	struct incoming *in = s->priv;
	struct mfd_error e;
	struct mfd__pkt_hdr h;
	struct mfd__end_rec end;
	int rc;
	mfd_error_clear(&e);
	if (!in)
		return mfd__err_set(err, MFD_ESTATE, -1, "listen before run");
	if (!(in->meta = malloc(MFD_PROTO_MAX_META)))
		return mfd__err_set(err, -ENOMEM, -1, "buffers");
	if ((rc = accept_channels(s, &e)) ||
	    (rc = mfd__stream_recv_main(s, "source", &h, in->meta, &e)))
		goto out;
	if (h.type != MFD_PKT_BLOCKS) {
		rc = mfd__err_set(&e, MFD_ETYPE, 0, "packet type %u, expected %u", h.type,
				  MFD_PKT_BLOCKS);
		goto out;
	}
	if ((rc = check_setup(s, in->meta, h.meta_len, &e)))
		goto out;
	if ((rc = mfd__ram_alloc_received(&s->ram))) {
		mfd__err_set(&e, rc, -1, "received bitmaps");
		goto out;
	}
	if ((rc = mfd__stream_add_payloads(s, true))) {
		mfd__err_set(&e, rc, -1, "payloads");
		goto out;
	}
	if ((rc = mfd__stream_start_receivers(s, s->nchan - 1, &e)))
		goto out;
	struct mfd__status_rec ack = { 0 };
	mfd__status_encode(in->meta, &ack);
	if ((rc = mfd__session_send_main(s, MFD_PKT_BLOCKS_ACK, in->meta, MFD_STATUS_REC_LEN))) {
		mfd__err_set(&e, rc, 0, "sending the block table ack");
		goto out;
	}
	MFD_ST_SET(s, t_setup_ns, mfd__now_ns());
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);
	if ((rc = receive_main(s, &end, &e)) || (rc = mfd__pool_sync(s->pool)) ||
	    (rc = check_totals(s, &end, &e)))
		goto out;
	MFD_ST_SET(s, rounds, (uint64_t)end.rounds + 1);
	struct mfd__status_rec commit = { 0 };
	if (s->nego.features & MFD_FEAT_VERIFY) {
		if ((rc = mfd__ram_digest(&s->ramx, &s->payloads.v[s->ram_payload], s->pool, in->map,
					  s->ram.n)))
			goto out;
		commit.digest = __atomic_load_n(&s->ramx.digest, __ATOMIC_RELAXED);
		if (commit.digest != end.digest) {
			rc = mfd__err_set(&e, MFD_EVERIFY, -1, "source digest %016llx, ours %016llx",
					  (unsigned long long)end.digest,
					  (unsigned long long)commit.digest);
			goto out;
		}
		MFD_ST_SET(s, verified, true);
	}
	mfd__status_encode(in->meta, &commit);
	if ((rc = mfd__session_send_main(s, MFD_PKT_COMMIT, in->meta, MFD_STATUS_REC_LEN)))
		mfd__err_set(&e, rc, 0, "sending COMMIT");
	else
		mfd__session_commit(s);	/* the source completes on this: so do we, whatever comes */
out:
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	return rc;
}

static void incoming_free(struct mfd_session *s)
{
	struct incoming *in = s->priv;
	if (!in)
		return;
	mfd__listener_free(in->listener);
	free(in->map);
	free(in->src_len);
	free(in->meta);
	free(in);
	s->priv = NULL;
}

const struct mfd__role_ops mfd__role_incoming = {
	.name = "migration",
	.listen = incoming_listen,
	.local_uri = incoming_local_uri,
	.run = incoming_run,
	.free = incoming_free,
};
