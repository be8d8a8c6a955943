/* payload/codec — the codec table; `none` is the only entry.  See codec.h. */
#include <errno.h>
#include <stdlib.h>
#include "core/err.h"
#include "core/util.h"
#include "payload/codec.h"
#include "proto/frame.h"

static int none_create(struct mfd__codec **out, size_t max_raw);

static int none_encode(struct mfd__codec *c, struct iovec *in, int nin, struct iovec **out,
		       int *nout, uint32_t *len)
{
	(void)c;
	size_t n = 0;
	for (int i = 0; i < nin; i++)
		n += in[i].iov_len;
	*out = in;
	*nout = nin;
	*len = (uint32_t)n;
	return 0;
}

static int none_decode(struct mfd__codec *c, struct mfd__chan *ch, uint32_t len, struct iovec *dst,
		       int ndst, struct mfd_error *err)
{
	(void)c;
	size_t n = 0;
	for (int i = 0; i < ndst; i++)
		n += dst[i].iov_len;
	if (n != len)	/* the payload checked it; a codec never trusts its caller's arithmetic */
		return mfd__err_set(err, MFD_ELENGTH, -1, "%u bytes of data for %zu", len, n);
	return ndst ? mfd__frame_read_data(ch, dst, ndst, "page data", err) : 0;
}

static void none_destroy(struct mfd__codec *c)
{
	free(c);
}

static const struct mfd__codec_ops codec_none = {
	.name = "none",
	.id = MFD_CODEC_NONE,
	.create = none_create,
	.encode = none_encode,
	.decode = none_decode,
	.destroy = none_destroy,
};

static int none_create(struct mfd__codec **out, size_t max_raw)
{
	(void)max_raw;
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->ops = &codec_none;
	return 0;
}

static const struct mfd__codec_ops *const codecs[] = { &codec_none };

const struct mfd__codec_ops *mfd__codec_find(uint8_t id)
{
	for (size_t i = 0; i < MFD_ARRAY_SIZE(codecs); i++)
		if (codecs[i]->id == id)
			return codecs[i];
	return NULL;
}
