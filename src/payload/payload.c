/* payload — the payload table; see payload.h. */
#include <errno.h>
#include "payload/payload.h"

void mfd__payloads_init(struct mfd__payloads *t)
{
	t->n = 0;
	for (unsigned i = 0; i < 256; i++)
		t->by_type[i] = -1;
}

int mfd__payloads_add(struct mfd__payloads *t, const struct mfd__payload_ops *ops, void *ctx)
{
	if (t->n >= MFD_MAX_PAYLOADS)
		return -ENOSPC;
	if (ops->pkt_type && t->by_type[ops->pkt_type] >= 0)
		return -EEXIST;
	struct mfd__payload *p = &t->v[t->n];
	p->ops = ops;
	p->ctx = ctx;
	p->index = (uint16_t)t->n;
	if (ops->pkt_type)
		t->by_type[ops->pkt_type] = (int16_t)t->n;
	return (int)t->n++;
}

const struct mfd__payload *mfd__payloads_by_type(const struct mfd__payloads *t, uint8_t type)
{
	int i = t->by_type[type];
	return i >= 0 ? &t->v[i] : NULL;
}

int mfd__payload_run(const struct mfd__payloads *t, struct mfd__worker *w, const struct mfd__job *j)
{
	if (j->payload >= t->n || j->verb >= MFD_JOB_VERBS)
		return -EINVAL;
	const struct mfd__payload *p = &t->v[j->payload];
	mfd__job_fn fn = p->ops->job[j->verb];
	return fn ? fn(w, p, j) : -EINVAL;
}

void mfd__payload_drop(const struct mfd__payloads *t, const struct mfd__job *j)
{
	if (j->payload < t->n && t->v[j->payload].ops->drop)
		t->v[j->payload].ops->drop(&t->v[j->payload], j);
}
