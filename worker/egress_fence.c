/*
 * The fence around result pages, in heavyd-egress: no connection to a
 * loopback, private, link-local or otherwise internal address, checked on
 * the address libcurl is about to connect to (after DNS, so a name that
 * resolves inward is caught, and on every redirect), unless the operator
 * allows it.  Workers cannot connect anywhere; this is the one place.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <string.h>

#include "worker.h"
#include "egress.h"


struct prefix {
	int		family;
	uint8_t		addr[16];
	unsigned	bits;
};

/* Where a page may not be: not public, or not really an address at all. */
static const struct prefix fence_inward[] = {
	{ AF_INET, { 0 }, 8 },				/* "this network" */
	{ AF_INET, { 10 }, 8 },
	{ AF_INET, { 100, 64 }, 10 },			/* carrier-grade NAT */
	{ AF_INET, { 127 }, 8 },
	{ AF_INET, { 169, 254 }, 16 },
	{ AF_INET, { 172, 16 }, 12 },
	{ AF_INET, { 192, 0, 0 }, 24 },
	{ AF_INET, { 192, 168 }, 16 },
	{ AF_INET, { 198, 18 }, 15 },			/* benchmarking */
	{ AF_INET, { 224 }, 3 },			/* multicast, reserved */
	{ AF_INET6, { 0 }, 127 },			/* :: and ::1 */
	{ AF_INET6, { 0xfc }, 7 },			/* unique local */
	{ AF_INET6, { 0xfe, 0x80 }, 10 },		/* link-local */
	{ AF_INET6, { 0xfe, 0xc0 }, 10 },		/* site-local */
	{ AF_INET6, { 0xff }, 8 },			/* multicast */
};

static bool
fence_prefix_has(const struct prefix *p, const uint8_t *a)
{
	unsigned	whole = p->bits / 8, rest = p->bits % 8;

	if (memcmp(p->addr, a, whole) != 0)
		return false;
	return rest == 0 ||
	    ((p->addr[whole] ^ a[whole]) & (0xff << (8 - rest))) == 0;
}

static bool
fence_inward4(const uint8_t *a)
{
	for (size_t i = 0; i < sizeof fence_inward / sizeof fence_inward[0];
	    i++)
		if (fence_inward[i].family == AF_INET &&
		    fence_prefix_has(&fence_inward[i], a))
			return true;
	return false;
}

/* Whether a connection to sa would reach inward: loopback, private,
 * link-local, multicast, or an IPv4 one of those inside IPv6. */
bool
egress_addr_inward(const struct sockaddr *sa)
{
	static const uint8_t	mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t	nat64[12] = { 0, 0x64, 0xff, 0x9b };
	const uint8_t		*a;

	if (sa->sa_family == AF_INET)
		return fence_inward4((const uint8_t *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr);
	if (sa->sa_family != AF_INET6)
		return true;
	a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return fence_inward4(a + 12);
	if (a[0] == 0x20 && a[1] == 0x02)		/* 6to4 */
		return fence_inward4(a + 2);
	for (size_t i = 0; i < sizeof fence_inward / sizeof fence_inward[0];
	    i++)
		if (fence_inward[i].family == AF_INET6 &&
		    fence_prefix_has(&fence_inward[i], a))
			return true;
	return false;
}

/* curl asks us for each socket it would connect: the fence is here. */
curl_socket_t
egress_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct egress_fence	*f = arg;
	const void		*in;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	if (!f->allow_private && egress_addr_inward(&a->addr)) {
		in = a->family == AF_INET6 ?
		    (const void *)&((struct sockaddr_in6 *)(void *)
		    &a->addr)->sin6_addr :
		    (const void *)&((struct sockaddr_in *)(void *)
		    &a->addr)->sin_addr;
		if (inet_ntop(a->family, in, f->refused, sizeof f->refused) ==
		    NULL)
			snprintf(f->refused, sizeof f->refused, "?");
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

