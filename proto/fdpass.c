/* One message with at most one file descriptor, over a unix socket. */
#include <sys/socket.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

union fd_cmsg {
	struct cmsghdr	hdr;
	char		buf[CMSG_SPACE(sizeof(int))];
};

/* Sends len bytes and fd (-1 for none); -1 with errno on failure. */
int
fd_send(int sock, const void *data, size_t len, int fd, int flags)
{
	struct iovec	iov = { (void *)data, len };
	struct msghdr	msg;
	union fd_cmsg	cmsg;

	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cmsg, 0, sizeof cmsg);
		msg.msg_control = cmsg.buf;
		msg.msg_controllen = sizeof cmsg.buf;
		cmsg.hdr.cmsg_level = SOL_SOCKET;
		cmsg.hdr.cmsg_type = SCM_RIGHTS;
		cmsg.hdr.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&cmsg.hdr), &fd, sizeof fd);
	}
	while (sendmsg(sock, &msg, flags | MSG_NOSIGNAL) == -1)
		if (errno != EINTR)
			return -1;
	return 0;
}

/*
 * Receives one message into data and the fd that came with it (-1 if
 * none, close-on-exec).  Returns its length, 0 at EOF, -1 with errno; a
 * message or fd that did not fit is EMSGSIZE, and its fd is closed.
 */
ssize_t
fd_recv(int sock, void *data, size_t len, int *fd, int flags)
{
	struct iovec	 iov = { data, len };
	struct msghdr	 msg;
	struct cmsghdr	*c;
	union fd_cmsg	 cmsg;
	ssize_t		 n;

	*fd = -1;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsg.buf;
	msg.msg_controllen = sizeof cmsg.buf;
	while ((n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC)) == -1)
		if (errno != EINTR)
			return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (c != NULL && c->cmsg_level == SOL_SOCKET &&
	    c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(fd, CMSG_DATA(c), sizeof *fd);
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}
