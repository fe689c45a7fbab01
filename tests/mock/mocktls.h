/* mockllm's TLS option and connection count (mocktls.c). */
#ifndef MOCKTLS_H
#define MOCKTLS_H

struct evhttp;
struct json_object;

void	mocktls_init(struct evhttp *, const char *);	/* NULL: plain */
void	mocktls_stats(struct json_object *);
void	mocktls_reset(void);
void	mocktls_free(void);

#endif
