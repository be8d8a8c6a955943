/*
 * vmm/vm_state — the device-state buffer of a tinyvm: the front's records (workload, serial)
 * and the backend's, behind a versioned, checksummed header.  Every field of a loaded buffer is
 * checked before anything is applied.
 *
 * State buffer format (version 1; little-endian, x86-64 only since KVM structures are stored
 * as the kernel defines them):
 *
 *     0      4   magic "TVMS"
 *     4      2   version (1)
 *     6      2   header bytes (40)
 *     8      4   accel: 1 kvm, 2 soft            (must match the loading VM)
 *     12     4   vCPU count                       (must match)
 *     16     8   guest RAM bytes                  (must match)
 *     24     8   body bytes (the records after the header)
 *     32     8   mfd_digest(body, body bytes, seed "TVMS")
 *     40     records, each:
 *              0  4  type (enum vm_rec_type)
 *              4  4  vCPU index, or 0xffffffff for a VM-wide record
 *              8  4  payload bytes
 *              12 4  reserved, 0
 *              16    payload, then zero padding to a multiple of 8
 *
 * Every record type appears at most once per vCPU (or once VM-wide); every type the backend
 * needs must be present; unknown types are refused.  Compatible additions get a new type and a
 * new version; a loader only accepts the version it writes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "vm_priv.h"

#define STATE_MAGIC	0x534d5654u	/* "TVMS" */
#define STATE_VERSION	1
#define STATE_HDR_BYTES	40
#define REC_HDR_BYTES	16

static const char *rec_name(uint32_t type)
{
	switch (type) {
	case VM_REC_WORKLOAD: return "workload";
	case VM_REC_SERIAL: return "serial";
	case VM_REC_KVM_PORTS: return "kvm-ports";
	case VM_REC_KVM_REGS: return "kvm-regs";
	case VM_REC_KVM_SREGS: return "kvm-sregs";
	case VM_REC_KVM_XSAVE: return "kvm-xsave";
	case VM_REC_KVM_XCRS: return "kvm-xcrs";
	case VM_REC_KVM_MSRS: return "kvm-msrs";
	case VM_REC_KVM_LAPIC: return "kvm-lapic";
	case VM_REC_KVM_EVENTS: return "kvm-events";
	case VM_REC_KVM_DEBUGREGS: return "kvm-debugregs";
	case VM_REC_KVM_MP_STATE: return "kvm-mp-state";
	case VM_REC_SOFT_CPU: return "soft-cpu";
	}
	return "unknown";
}

size_t vm__rec_size(uint32_t len)
{
	return REC_HDR_BYTES + (((size_t)len + 7) & ~(size_t)7);
}

void *vm__rec_put(struct vm_wbuf *w, uint32_t type, uint32_t vcpu, uint32_t len)
{
	size_t need = vm__rec_size(len);
	if (w->err || w->len - w->pos < need) {
		w->err = -ENOSPC;
		return NULL;
	}
	uint8_t *p = w->buf + w->pos;
	memset(p, 0, need);
	put_le32(p, type);
	put_le32(p + 4, vcpu);
	put_le32(p + 8, len);
	w->pos += need;
	return p + REC_HDR_BYTES;
}

static size_t workload_rec_bytes(const struct vm *vm)
{
	return 8 + 16 * (size_t)vm->nr_dirty;
}

size_t vm_state_size(struct vm *vm)
{
	return STATE_HDR_BYTES + vm__rec_size((uint32_t)workload_rec_bytes(vm)) +
	       vm->nr_vcpus * vm__rec_size(VM_SERIAL_REC_BYTES) + vm->ops->state_size(vm);
}

int vm_state_save(struct vm *vm, void *buf, size_t len, size_t *used)
{
	*used = 0;
	pthread_mutex_lock(&vm->lock);
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		return -EINVAL;
	if (len < STATE_HDR_BYTES)
		return -ENOSPC;

	struct vm_wbuf w = { .buf = buf, .len = len, .pos = STATE_HDR_BYTES };
	uint8_t *p = vm__rec_put(&w, VM_REC_WORKLOAD, VM_REC_VM, (uint32_t)workload_rec_bytes(vm));
	if (p) {
		put_le32(p, (uint32_t)vm->opts.workload);
		put_le32(p + 4, vm->nr_dirty);
		for (unsigned i = 0; i < vm->nr_dirty; i++) {
			put_le64(p + 8 + 16 * i, vm->dirty[i].gpa);
			put_le64(p + 16 + 16 * i, vm->dirty[i].pages);
		}
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		p = vm__rec_put(&w, VM_REC_SERIAL, i, VM_SERIAL_REC_BYTES);
		if (!p)
			break;
		vm__serial_save(&vm->vcpus[i], p);
	}
	if (w.err)
		return w.err;
	int rc = vm->ops->state_save(vm, &w);
	if (rc < 0)
		return rc;
	if (w.err)
		return w.err;

	uint8_t *h = buf;
	put_le32(h, STATE_MAGIC);
	put_le16(h + 4, STATE_VERSION);
	put_le16(h + 6, STATE_HDR_BYTES);
	put_le32(h + 8, vm->ops->accel == VM_ACCEL_KVM ? 1 : 2);
	put_le32(h + 12, vm->nr_vcpus);
	put_le64(h + 16, vm->ram_bytes);
	put_le64(h + 24, w.pos - STATE_HDR_BYTES);
	put_le64(h + 32, mfd_digest(h + STATE_HDR_BYTES, w.pos - STATE_HDR_BYTES, STATE_MAGIC));
	*used = w.pos;
	return 0;
}

int vm_state_reseal(void *buf, size_t len)
{
	uint8_t *h = buf;
	if (len < STATE_HDR_BYTES)
		return MFD_ELENGTH;
	if (get_le32(h) != STATE_MAGIC)
		return MFD_EMAGIC;
	uint64_t body_len = get_le64(h + 24);
	if (body_len > len - STATE_HDR_BYTES)
		return MFD_ELENGTH;
	put_le64(h + 32, mfd_digest(h + STATE_HDR_BYTES, body_len, STATE_MAGIC));
	return 0;
}

static bool type_in(const uint32_t *list, uint32_t type)
{
	for (; list && *list; list++)
		if (*list == type)
			return true;
	return false;
}

static const uint32_t front_vm_records[] = { VM_REC_WORKLOAD, 0 };
static const uint32_t front_vcpu_records[] = { VM_REC_SERIAL, 0 };

static int check_front_rec(struct vm *vm, const struct vm_rec *r, char *errbuf, size_t errlen)
{
	if (r->type == VM_REC_WORKLOAD) {
		if (r->len != workload_rec_bytes(vm))
			return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
				       "workload record: %u bytes, expected %zu (different "
				       "workload or vCPU count)", r->len, workload_rec_bytes(vm));
		if (get_le32(r->data) != (uint32_t)vm->opts.workload ||
		    get_le32(r->data + 4) != vm->nr_dirty)
			return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
				       "workload record: workload %u with %u ranges, this VM runs "
				       "%u with %u", get_le32(r->data), get_le32(r->data + 4),
				       (unsigned)vm->opts.workload, vm->nr_dirty);
		for (unsigned i = 0; i < vm->nr_dirty; i++)
			if (get_le64(r->data + 8 + 16 * i) != vm->dirty[i].gpa ||
			    get_le64(r->data + 16 + 16 * i) != vm->dirty[i].pages)
				return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
					       "workload record: range %u differs (dirty size?)", i);
		return 0;
	}
	/* VM_REC_SERIAL */
	if (r->len != VM_SERIAL_REC_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "serial record of vCPU %u: %u bytes, "
			       "expected %d", r->vcpu, r->len, VM_SERIAL_REC_BYTES);
	if (get_le32(r->data + 16) > VM_SERIAL_LINE_MAX || get_le32(r->data + 20))
		return vm__err(errbuf, errlen, MFD_ERANGE, "serial record of vCPU %u: line length "
			       "%u (max %d), reserved 0x%x", r->vcpu, get_le32(r->data + 16),
			       VM_SERIAL_LINE_MAX, get_le32(r->data + 20));
	return 0;
}

/* Walk the records of a checked header into recs[(vcpu + 1) * VM_REC_TYPES + type] (vcpu + 1:
 * slot 0 holds the VM-wide ones), checking bounds, padding, types, indices and duplicates. */
static int index_records(struct vm *vm, const uint8_t *body, size_t body_len,
			 struct vm_rec *recs, char *errbuf, size_t errlen)
{
	size_t pos = 0;
	while (pos < body_len) {
		if (body_len - pos < REC_HDR_BYTES)
			return vm__err(errbuf, errlen, MFD_ELENGTH,
				       "record at offset %zu: truncated header", pos);
		const uint8_t *h = body + pos;
		uint32_t type = get_le32(h), vcpu = get_le32(h + 4), len = get_le32(h + 8);
		if (get_le32(h + 12))
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "record at offset %zu: reserved field not zero", pos);
		size_t avail = body_len - pos - REC_HDR_BYTES;
		size_t padded = ((size_t)len + 7) & ~(size_t)7;
		if (len > avail || padded > avail)
			return vm__err(errbuf, errlen, MFD_ELENGTH,
				       "record %s at offset %zu: %u bytes, only %zu left",
				       rec_name(type), pos, len, avail);
		for (size_t i = len; i < padded; i++)
			if (h[REC_HDR_BYTES + i])
				return vm__err(errbuf, errlen, MFD_ELENGTH,
					       "record %s at offset %zu: padding not zero",
					       rec_name(type), pos);
		bool vm_wide = type_in(front_vm_records, type) || type_in(vm->ops->vm_records, type);
		bool per_vcpu = type_in(front_vcpu_records, type) ||
				type_in(vm->ops->vcpu_records, type);
		if (!vm_wide && !per_vcpu)
			return vm__err(errbuf, errlen, MFD_ETYPE,
				       "record at offset %zu: type %u (%s) is not used by a %s VM",
				       pos, type, rec_name(type), vm->ops->name);
		if (vm_wide ? vcpu != VM_REC_VM : vcpu >= vm->nr_vcpus)
			return vm__err(errbuf, errlen, MFD_ERANGE,
				       "record %s at offset %zu: vCPU index %u out of range",
				       rec_name(type), pos, vcpu);
		struct vm_rec *slot = &recs[(vm_wide ? 0 : (size_t)vcpu + 1) * VM_REC_TYPES + type];
		if (slot->data)
			return vm__err(errbuf, errlen, MFD_ETYPE,
				       "record %s for vCPU %d appears twice", rec_name(type),
				       vm_wide ? -1 : (int)vcpu);
		*slot = (struct vm_rec){ .type = type, .vcpu = vcpu, .len = len,
					 .data = h + REC_HDR_BYTES };
		pos += REC_HDR_BYTES + padded;
	}
	return 0;
}

static int require_records(struct vm *vm, const struct vm_rec *recs, char *errbuf, size_t errlen)
{
	for (unsigned i = 0; i <= vm->nr_vcpus; i++) {
		const uint32_t *lists[2] = { i ? front_vcpu_records : front_vm_records,
					     i ? vm->ops->vcpu_records : vm->ops->vm_records };
		for (int l = 0; l < 2; l++)
			for (const uint32_t *t = lists[l]; t && *t; t++)
				if (!recs[(size_t)i * VM_REC_TYPES + *t].data)
					return vm__err(errbuf, errlen, MFD_ETYPE,
						       "record %s%s%d is missing", rec_name(*t),
						       i ? " of vCPU " : "", i ? (int)i - 1 : 0);
	}
	return 0;
}

int vm_state_load(struct vm *vm, const void *buf, size_t len, char *errbuf, size_t errlen)
{
	const uint8_t *h = buf;
	int rc;

	pthread_mutex_lock(&vm->lock);
	bool created = vm->state == VM_CREATED;
	pthread_mutex_unlock(&vm->lock);
	if (!created)
		return vm__err(errbuf, errlen, -EINVAL,
			       "state can only be loaded into a VM that was never started");

	if (len < STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state buffer of %zu bytes is shorter "
			       "than its header", len);
	if (get_le32(h) != STATE_MAGIC)
		return vm__err(errbuf, errlen, MFD_EMAGIC, "not a tinyvm state buffer (magic 0x%08x)",
			       get_le32(h));
	if (get_le16(h + 4) != STATE_VERSION)
		return vm__err(errbuf, errlen, MFD_EVERSION, "state version %u, this build reads %d",
			       get_le16(h + 4), STATE_VERSION);
	if (get_le16(h + 6) != STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state header of %u bytes, expected %d",
			       get_le16(h + 6), STATE_HDR_BYTES);
	uint32_t accel = get_le32(h + 8), want = vm->ops->accel == VM_ACCEL_KVM ? 1 : 2;
	if (accel != want)
		return vm__err(errbuf, errlen, MFD_EBLOCKTABLE, "state of a %s VM, this VM is %s",
			       accel == 1 ? "kvm" : accel == 2 ? "soft" : "unknown",
			       vm->ops->name);
	if (get_le32(h + 12) != vm->nr_vcpus || get_le64(h + 16) != vm->ram_bytes)
		return vm__err(errbuf, errlen, MFD_EBLOCKTABLE,
			       "state of a VM with %u vCPUs and %" PRIu64 " bytes of RAM, this one "
			       "has %u and %" PRIu64, get_le32(h + 12), get_le64(h + 16),
			       vm->nr_vcpus, vm->ram_bytes);
	uint64_t body_len = get_le64(h + 24);
	if (body_len > len - STATE_HDR_BYTES)
		return vm__err(errbuf, errlen, MFD_ELENGTH, "state body of %" PRIu64 " bytes, the "
			       "buffer holds %zu", body_len, len - STATE_HDR_BYTES);
	if (mfd_digest(h + STATE_HDR_BYTES, body_len, STATE_MAGIC) != get_le64(h + 32))
		return vm__err(errbuf, errlen, MFD_ECHECKSUM, "state buffer checksum mismatch");

	struct vm_rec *recs = calloc((size_t)(vm->nr_vcpus + 1) * VM_REC_TYPES, sizeof(*recs));
	if (!recs)
		return vm__err(errbuf, errlen, -ENOMEM, "out of memory");
	rc = index_records(vm, h + STATE_HDR_BYTES, body_len, recs, errbuf, errlen);
	if (rc < 0)
		goto out;
	rc = require_records(vm, recs, errbuf, errlen);
	if (rc < 0)
		goto out;

	/* Check every record's content before anything is applied. */
	for (size_t i = 0; i < (size_t)(vm->nr_vcpus + 1) * VM_REC_TYPES; i++) {
		const struct vm_rec *r = &recs[i];
		if (!r->data)
			continue;
		if (r->type == VM_REC_WORKLOAD || r->type == VM_REC_SERIAL)
			rc = check_front_rec(vm, r, errbuf, errlen);
		else
			rc = vm->ops->state_check(vm, r, errbuf, errlen);
		if (rc < 0)
			goto out;
	}

	/* Apply. */
	const struct vm_rec *table[VM_REC_TYPES];
	for (unsigned t = 0; t < VM_REC_TYPES; t++)
		table[t] = recs[t].data ? &recs[t] : NULL;
	rc = vm->ops->state_apply(vm, NULL, table, errbuf, errlen);
	if (rc < 0)
		goto out;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];
		for (unsigned t = 0; t < VM_REC_TYPES; t++) {
			struct vm_rec *r = &recs[(size_t)(i + 1) * VM_REC_TYPES + t];
			table[t] = r->data ? r : NULL;
		}
		vm__serial_load(v, table[VM_REC_SERIAL]->data);
		rc = vm->ops->state_apply(vm, v, table, errbuf, errlen);
		if (rc < 0)
			goto out;
	}
	vm->loaded = true;
out:
	free(recs);
	return rc;
}
