/* What bench.c and cost.c share: heavyd (or BENCH_SERVER) over stdio. */
#ifndef BENCH_H
#define BENCH_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct json_object;

struct server {
	pid_t	pid;
	int	in;		/* we write */
	int	out;		/* we read */
	char	buf[1 << 16];
	size_t	len;
};

void	 server_start(struct server *);
int	 server_stop(struct server *);
void	 server_write(struct server *, const char *);
char	*server_read_line(struct server *);
struct json_object *server_response(struct server *, int);
void	 server_initialize(struct server *);
void	 send_orchestrate(struct server *, int, const char *, int);
int	 await_results(struct server *, int, int64_t *);

/* cost.c */
void	 bench_pss(int);
void	 bench_cpu(int, int, int);
long	 tree_pss_kb(pid_t, int *);
void	 sampler_start(pid_t);
long	 sampler_stop(int *);

#endif
