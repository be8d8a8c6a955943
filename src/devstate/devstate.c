/* devstate — see devstate.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "devstate/devstate.h"

int mfd__devices_add(struct mfd__devices *d, const char *name, uint32_t instance, uint32_t version,
		     const struct mfd_device_ops *ops, void *opaque, struct mfd_error *err)
{
	size_t nl = name ? strlen(name) : 0;
	if (nl == 0 || nl > MFD_MAX_NAME || !ops)
		return mfd__err_set(err, -EINVAL, -1, "device name must be 1..%d bytes, ops set",
				    MFD_MAX_NAME);
	if (mfd__devices_find(d, name, instance))
		return mfd__err_set(err, -EEXIST, -1, "device %s.%u registered twice", name, instance);
	if (d->n >= MFD_MAX_DEVICES)
		return mfd__err_set(err, -ENOSPC, -1, "more than %d devices", MFD_MAX_DEVICES);
	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 8;
		struct mfd__device *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return mfd__err_set(err, -ENOMEM, -1, "device table");
		d->v = v;
		d->cap = cap;
	}
	struct mfd__device *dev = &d->v[d->n];
	memset(dev, 0, sizeof(*dev));
	memcpy(dev->name, name, nl + 1);
	dev->instance = instance;
	dev->version = version;
	dev->ops = *ops;
	dev->opaque = opaque;
	return (int)d->n++;
}

struct mfd__device *mfd__devices_find(struct mfd__devices *d, const char *name, uint32_t instance)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (d->v[i].instance == instance && !strcmp(d->v[i].name, name))
			return &d->v[i];
	return NULL;
}

int mfd__devices_describe(struct mfd__devices *d, const char *name, uint32_t instance,
			  const char *config, uint64_t fixed_size)
{
	struct mfd__device *dev = name ? mfd__devices_find(d, name, instance) : NULL;
	if (!dev)
		return -ENOENT;
	size_t n = config ? strlen(config) : 0;
	if (n >= sizeof(dev->config) || fixed_size > (64ull << 20) * 1024)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (config[i] < 0x20 || config[i] > 0x7e)	/* printable: it goes into messages */
			return -EINVAL;
	memcpy(dev->config, config ? config : "", n + 1);
	dev->fixed_size = fixed_size;
	return 0;
}

void mfd__devices_free(struct mfd__devices *d)
{
	free(d->v);
	memset(d, 0, sizeof(*d));
}

long mfd__device_save(const struct mfd__device *dev, uint8_t **buf, size_t *cap, size_t max,
		      struct mfd_error *err)
{
	if (!dev->ops.save)
		return mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u has no save callback",
				    dev->name, dev->instance);
	for (int attempt = 0; attempt < 4; attempt++) {
		long n = dev->ops.save(dev->opaque, *buf, *cap);
		if (n < 0)
			return mfd__err_set(err, (int)n, -1, "saving device %s.%u", dev->name,
					    dev->instance);
		if (dev->fixed_size && (uint64_t)n != dev->fixed_size)
			return mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u saved %ld bytes, it declared "
					    "a fixed %llu", dev->name, dev->instance, n,
					    (unsigned long long)dev->fixed_size);
		if ((size_t)n <= *cap)
			return n;
		if ((size_t)n > max)
			return mfd__err_set(err, MFD_ELENGTH, -1, "device %s.%u state of %ld bytes over %zu",
					    dev->name, dev->instance, n, max);
		uint8_t *nb = realloc(*buf, (size_t)n);
		if (!nb)
			return mfd__err_set(err, -ENOMEM, -1, "device %s.%u state of %ld bytes", dev->name,
					    dev->instance, n);
		*buf = nb;
		*cap = (size_t)n;
	}
	return mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u keeps growing its state", dev->name,
			    dev->instance);
}
