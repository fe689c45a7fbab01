/*
 * dgramsink PATH: a unix datagram socket bound at PATH, standing for
 * systemd's notify socket or journald's, for the integration tests (Node
 * has no unix datagram sockets).  Each datagram becomes one line on
 * stdout: a JSON string, every byte outside printable ASCII as \u00XX,
 * so a binary journal field reads back byte for byte.  It exits when its
 * stdin closes, removing PATH.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
sink_print(const unsigned char *d, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '"' || d[i] == '\\')
			printf("\\%c", d[i]);
		else if (d[i] < 0x20 || d[i] >= 0x7f)
			printf("\\u%04x", d[i]);
		else
			putchar(d[i]);
	}
	printf("\"\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct sockaddr_un	 sa = { .sun_family = AF_UNIX };
	static unsigned char	 d[1 << 20];
	struct pollfd		 pfd[2];
	ssize_t			 n;
	int			 s;

	if (argc != 2 || strlen(argv[1]) >= sizeof sa.sun_path) {
		fprintf(stderr, "usage: dgramsink PATH\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	if ((s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(s, (struct sockaddr *)&sa, sizeof sa) == -1) {
		fprintf(stderr, "dgramsink: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	pfd[0] = (struct pollfd){ .fd = s, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
	for (;;) {
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if ((n = recv(s, d, sizeof d, 0)) >= 0)
				sink_print(d, (size_t)n);
			continue;	/* every datagram before stdin's end */
		}
		if (pfd[1].revents != 0 && read(STDIN_FILENO, d, sizeof d) <= 0)
			break;
	}
	unlink(argv[1]);
	return 0;
}
