/* bzImage setup header parsing (Documentation/arch/x86/boot.rst). Only
 * validation here: loader.c decides how the image is booted. */
#include <errno.h>
#include <string.h>

#include "loader.h"
#include "util.h"

#define BZ_MIN_LEN        1024
#define BZ_MIN_VERSION    0x020C /* xloadflags and the 64-bit entry */

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int x86_bzimage_probe(const uint8_t *buf, size_t len)
{
	return len >= 0x206 && get_le16(buf + 0x1fe) == X86_BOOT_FLAG && get_le32(buf + 0x202) == X86_HDRS_MAGIC;
}

int x86_bzimage_parse(const uint8_t *buf, size_t len, struct x86_bzimage *bz)
{
	if (!x86_bzimage_probe(buf, len))
		return -ENOEXEC;
	if (len < BZ_MIN_LEN)
		return -EINVAL;

	memset(bz, 0, sizeof(*bz));
	/* The header ends where the jump at 0x200 lands: 0x202 + its offset. */
	size_t hdr_end = 0x202 + (size_t)buf[0x201];
	bz->hdr_len = MIN(hdr_end - X86_SETUP_HDR_OFFSET, sizeof(bz->hdr));
	memcpy(&bz->hdr, buf + X86_SETUP_HDR_OFFSET, bz->hdr_len);

	const struct x86_setup_header *h = &bz->hdr;
	if (h->version < BZ_MIN_VERSION || !(h->xloadflags & X86_XLF_KERNEL_64))
		return -ENOEXEC;
	/* A 2.12 header reaches at least init_size and handover_offset. */
	if (bz->hdr_len < offsetof(struct x86_setup_header, handover_offset) + 4)
		return -EINVAL;

	size_t setup_len = ((size_t)(h->setup_sects ? h->setup_sects : 4) + 1) * 512;
	if (setup_len >= len)
		return -EINVAL;
	/* syssize counts 16-byte paragraphs of the protected-mode part; the
	 * file may carry more after it (a signature), never less. */
	uint64_t sys_len = (uint64_t)h->syssize * 16;
	size_t pm_avail = len - setup_len;
	if (sys_len == 0 || sys_len > (uint64_t)pm_avail + 15)
		return -EINVAL;
	bz->pm = buf + setup_len;
	bz->pm_len = MIN(pm_avail, sys_len);
	if (bz->pm_len <= X86_BZIMAGE_ENTRY64)
		return -EINVAL;

	if (h->payload_length) {
		if (h->payload_offset > bz->pm_len || h->payload_length > bz->pm_len - h->payload_offset)
			return -EINVAL;
		bz->payload = bz->pm + h->payload_offset;
		bz->payload_len = h->payload_length;
	}
	return 0;
}
