/* tests/fakedev.h — a fake device for the tests that move device state (t_live, t_snap,
 * t_snap_reject): its state is a buffer; load keeps what arrived and its version, or refuses
 * with the code the test chose.  Register it with mfd_device_add(s, name, instance, version,
 * &dev_ops, &dev). */
#ifndef MFD_TEST_FAKEDEV_H
#define MFD_TEST_FAKEDEV_H

#include "tutil.h"

struct dev {
	uint8_t state[20000];	/* what save hands over: the first len bytes */
	size_t len;
	uint8_t loaded[20000];	/* what load got */
	size_t loaded_len;
	uint32_t loaded_version;
	int refuse;		/* load returns this code (0: it accepts) */
	int saves, loads;	/* calls */
};

static inline long dev_save(void *o, void *buf, size_t cap)
{
	struct dev *d = o;
	d->saves++;
	if (cap >= d->len)
		memcpy(buf, d->state, d->len);
	return (long)d->len;
}

static inline int dev_load(void *o, const void *buf, size_t len, uint32_t version)
{
	struct dev *d = o;
	if (d->refuse)
		return d->refuse;
	if (len > sizeof(d->loaded))
		return -EINVAL;
	memcpy(d->loaded, buf, len);
	d->loaded_len = len;
	d->loaded_version = version;
	d->loads++;
	return 0;
}

static const struct mfd_device_ops dev_ops = { dev_save, dev_load };

#endif
