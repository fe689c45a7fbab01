/* Frame builders and validating readers (after smtpd's mproc.c). */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

enum field_tag { TAG_U32 = 1, TAG_U64, TAG_STR, TAG_DATA };

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Builders write into an uncapped buffer; m_close enforces the cap once. */
static void
m_put(struct buf *b, const void *p, size_t len)
{
	if (buf_add(b, p, len) == -1)
		fatalx("message buffer overflow");
}

void
m_create(struct buf *b, int type)
{
	uint8_t	hdr[PROTO_HDR_LEN];

	buf_init(b, 0);
	put_le(hdr, PROTO_VERSION, 2);
	put_le(hdr + 2, type, 2);
	put_le(hdr + 4, 0, 4);
	m_put(b, hdr, sizeof hdr);
}

static void
m_add_tagged(struct buf *b, enum field_tag tag, uint64_t v, int n)
{
	uint8_t	field[9];

	field[0] = tag;
	put_le(field + 1, v, n);
	m_put(b, field, 1 + n);
}

void
m_add_u32(struct buf *b, uint32_t v)
{
	m_add_tagged(b, TAG_U32, v, 4);
}

void
m_add_u64(struct buf *b, uint64_t v)
{
	m_add_tagged(b, TAG_U64, v, 8);
}

static void
m_add_bytes(struct buf *b, enum field_tag tag, const void *p, size_t len)
{
	if (len > UINT32_MAX)
		fatalx("message field too long");
	m_add_tagged(b, tag, len, 4);
	m_put(b, p, len);
}

void
m_add_str(struct buf *b, const char *s)
{
	m_add_bytes(b, TAG_STR, s, s == NULL ? 0 : strlen(s));
}

void
m_add_data(struct buf *b, const void *p, size_t len)
{
	m_add_bytes(b, TAG_DATA, p, len);
}

int
m_close(struct buf *b, size_t max)
{
	size_t	payload = b->len - PROTO_HDR_LEN;

	if (b->len > max || payload > UINT32_MAX)
		return -1;
	put_le((uint8_t *)b->data + 4, payload, 4);
	return 0;
}

enum frame_status
m_frame_check(const void *data, size_t len, size_t max, struct msg_hdr *hdr)
{
	const uint8_t	*p = data;

	if (len < PROTO_HDR_LEN)
		return FRAME_INCOMPLETE;
	hdr->version = (uint16_t)get_le(p, 2);
	hdr->type = (uint16_t)get_le(p + 2, 2);
	hdr->len = (uint32_t)get_le(p + 4, 4);
	if (hdr->version != PROTO_VERSION || hdr->type == 0 ||
	    (hdr->type >= MSG_TYPE_MAX && (hdr->type < MSG_EGRESS_FIRST ||
	    hdr->type >= MSG_EGRESS_MAX)) || hdr->len > max - PROTO_HDR_LEN)
		return FRAME_INVALID;
	if (len - PROTO_HDR_LEN < hdr->len)
		return FRAME_INCOMPLETE;
	return FRAME_OK;
}

void
m_reader_init(struct mreader *r, const void *payload, size_t len)
{
	r->p = payload;
	r->left = len;
	r->bad = 0;
}

/* Consumes a tag and n bytes of value; fails on a wrong tag or short input. */
static int
m_take(struct mreader *r, enum field_tag tag, int n, uint64_t *v)
{
	if (r->bad || r->left < (size_t)(1 + n) || r->p[0] != tag) {
		r->bad = 1;
		return -1;
	}
	*v = get_le(r->p + 1, n);
	r->p += 1 + n;
	r->left -= 1 + n;
	return 0;
}

int
m_get_u32(struct mreader *r, uint32_t *out)
{
	uint64_t	v;

	if (m_take(r, TAG_U32, 4, &v) == -1)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int
m_get_u64(struct mreader *r, uint64_t *out)
{
	return m_take(r, TAG_U64, 8, out);
}

int
m_get_str(struct mreader *r, char **out)
{
	uint64_t	len;

	if (m_take(r, TAG_STR, 4, &len) == -1)
		return -1;
	if (len > r->left || memchr(r->p, '\0', len) != NULL) {
		r->bad = 1;
		return -1;
	}
	*out = xstrndup((const char *)r->p, len);
	r->p += len;
	r->left -= len;
	return 0;
}

int
m_get_data(struct mreader *r, char **out, size_t *outlen, size_t max)
{
	uint64_t	len;

	if (m_take(r, TAG_DATA, 4, &len) == -1)
		return -1;
	if (len > r->left || len > max) {
		r->bad = 1;
		return -1;
	}
	*out = xmalloc(len + 1);
	memcpy(*out, r->p, len);
	(*out)[len] = '\0';
	*outlen = len;
	r->p += len;
	r->left -= len;
	return 0;
}

int
m_end(struct mreader *r)
{
	if (r->bad || r->left != 0) {
		r->bad = 1;
		return -1;
	}
	return 0;
}
