/* The texts the supervisor writes for the planner and the synthesis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

/* Replaces each {key} by its value; other braces are left alone. */
char *
prompt_render(const char *tmpl, const char *const *keys,
    const char *const *values, size_t n)
{
	struct buf	 out;
	const char	*p = tmpl;
	size_t		 klen;
	bool		 hit;

	buf_init(&out, 0);
	while (*p != '\0') {
		hit = false;
		for (size_t i = 0; *p == '{' && i < n && !hit; i++) {
			klen = strlen(keys[i]);
			if (strncmp(p + 1, keys[i], klen) == 0 &&
			    p[1 + klen] == '}') {
				buf_addstr(&out, values[i]);
				p += klen + 2;
				hit = true;
			}
		}
		if (!hit)
			buf_add(&out, p++, 1);
	}
	return buf_release(&out);
}

char *
prompt_planner(const struct heavy_config *cfg, const char *query,
    int num_agents)
{
	const char	*keys[] = { "num_agents", "user_input" };
	const char	*values[2];
	char		 n[16];

	snprintf(n, sizeof n, "%d", num_agents);
	values[0] = n;
	values[1] = query;
	return prompt_render(cfg->question_prompt, keys, values, 2);
}

/* make-it-heavy's fallback angles, numbered past the fourth. */
char *
prompt_fallback_question(const char *query, int index)
{
	static const char	*angles[] = {
		"Research comprehensive information about",
		"Analyze and provide insights about",
		"Find alternative perspectives on",
		"Verify and cross-check facts about",
	};

	if (index < 4)
		return xasprintf("%s: %s", angles[index], query);
	return xasprintf("%s (angle %d): %s", angles[index % 4], index + 1,
	    query);
}

/* Cuts at or before len without splitting a UTF-8 sequence. */
static size_t
utf8_cut(const char *s, size_t len)
{
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
		len--;
	return len;
}

/* Water-filling: short answers keep everything, long ones share the rest. */
static void
prompt_shares(const char *const *answers, int n, size_t budget,
    size_t *share)
{
	bool	done[HEAVY_MAX_AGENTS] = { false };
	int	left = n;

	for (bool changed = true; changed && left > 0; ) {
		size_t	fair = budget / (size_t)left;

		changed = false;
		for (int i = 0; i < n; i++) {
			size_t	len = strlen(answers[i]);

			if (!done[i] && len <= fair) {
				share[i] = len;
				budget -= len;
				done[i] = true;
				left--;
				changed = true;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (!done[i])
			share[i] = budget / (size_t)left;
}

char *
prompt_synthesis(const struct heavy_config *cfg, const char *const *answers,
    int n, size_t budget, int *dropped)
{
	const char	*keys[] = { "num_responses", "agent_responses" };
	const char	*values[2];
	size_t		 share[HEAVY_MAX_AGENTS], len, cut;
	struct buf	 all;
	char		 num[16], *out;

	prompt_shares(answers, n, budget, share);
	*dropped = 0;
	buf_init(&all, 0);
	for (int i = 0; i < n; i++) {
		len = strlen(answers[i]);
		cut = len > share[i] ? utf8_cut(answers[i], share[i]) : len;
		buf_printf(&all, "=== AGENT %d RESPONSE ===\n", i + 1);
		buf_add(&all, answers[i], cut);
		if (cut < len) {
			buf_printf(&all, "\n[truncated: %zu of %zu bytes kept]",
			    cut, len);
			*dropped += 1;
		}
		buf_addstr(&all, "\n\n");
	}
	snprintf(num, sizeof num, "%d", n);
	values[0] = num;
	values[1] = buf_cstr(&all);
	out = prompt_render(cfg->synthesis_prompt, keys, values, 2);
	buf_free(&all);
	return out;
}
