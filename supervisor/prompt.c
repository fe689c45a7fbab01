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

/* One answer, cut to its share; the cut is marked and counted. */
static void
prompt_add_answer(struct buf *all, const char *answer, size_t share,
    int *dropped)
{
	size_t	len = strlen(answer), cut;

	cut = len > share ? utf8_cut(answer, share) : len;
	buf_add(all, answer, cut);
	if (cut < len) {
		buf_printf(all, "\n[truncated: %zu of %zu bytes kept]", cut,
		    len);
		*dropped += 1;
	}
	buf_addstr(all, "\n\n");
}

/*
 * ranks NULL: the answers as they come.  Otherwise they come best first,
 * ranks[i] being answer i's peer-review rank (0: unranked, listed last),
 * and the synthesis is told so.
 */
char *
prompt_synthesis_ranked(const struct heavy_config *cfg,
    const char *const *answers, const int *ranks, int n, size_t budget,
    int *dropped)
{
	const char	*keys[] = { "num_responses", "agent_responses" };
	const char	*values[2];
	size_t		 share[HEAVY_MAX_AGENTS];
	struct buf	 all;
	char		 num[16], *out;
	int		 nranked = 0;

	prompt_shares(answers, n, budget, share);
	*dropped = 0;
	buf_init(&all, 0);
	for (int i = 0; ranks != NULL && i < n; i++)
		nranked += ranks[i] > 0;
	if (ranks != NULL)
		buf_addstr(&all, "The agents reviewed each other's responses "
		    "anonymously and ranked them. The responses are listed "
		    "best first, with their rank: give more weight to the "
		    "better-ranked ones.\n\n");
	for (int i = 0; i < n; i++) {
		if (ranks != NULL && ranks[i] > 0)
			buf_printf(&all, "=== AGENT %d RESPONSE (peer-review "
			    "rank %d of %d) ===\n", i + 1, ranks[i], nranked);
		else if (ranks != NULL)
			buf_printf(&all, "=== AGENT %d RESPONSE (not ranked: "
			    "no review of it came back) ===\n", i + 1);
		else
			buf_printf(&all, "=== AGENT %d RESPONSE ===\n", i + 1);
		prompt_add_answer(&all, answers[i], share[i], dropped);
	}
	snprintf(num, sizeof num, "%d", n);
	values[0] = num;
	values[1] = buf_cstr(&all);
	out = prompt_render(cfg->synthesis_prompt, keys, values, 2);
	buf_free(&all);
	return out;
}

char *
prompt_synthesis(const struct heavy_config *cfg, const char *const *answers,
    int n, size_t budget, int *dropped)
{
	return prompt_synthesis_ranked(cfg, answers, NULL, n, budget, dropped);
}

/*
 * incremental: a draft, from the n answers in of total.  The phrase "have
 * answered so far" is what the test mock recognises a draft by.
 */
char *
prompt_draft(const struct heavy_config *cfg, const char *const *answers,
    int n, int total, size_t budget, int *dropped)
{
	char	*body = prompt_synthesis(cfg, answers, n, budget, dropped), *out;

	out = xasprintf("%s\n\nOnly %d of the %d agents have answered so far; "
	    "the others are still working. Write the best answer these "
	    "responses allow now: it is shown as an early draft, and the "
	    "final answer, from every response, follows it.", body, n, total);
	free(body);
	return out;
}

/*
 * incremental: the final synthesis, which starts from the last draft
 * (written from covered answers).  The draft gets at most one answer's
 * share of the budget, cut the same way.
 */
char *
prompt_synthesis_draft(const struct heavy_config *cfg,
    const char *const *answers, int n, size_t budget, int *dropped,
    const char *draft, int covered)
{
	size_t		 share = budget / (size_t)(n + 1), len = strlen(draft);
	struct buf	 out;
	char		*body;
	int		 cut = 0;

	if (len < share)
		share = len;
	body = prompt_synthesis(cfg, answers, n, budget - share, dropped);
	buf_init(&out, 0);
	buf_printf(&out, "%s\n\nAn early draft of this answer was written from "
	    "the first %d of these %d responses, while the other agents were "
	    "still working. Start from it: keep what the later responses "
	    "confirm, correct what they contradict, add what they bring, and "
	    "give only the final answer.\n\n=== EARLY DRAFT (from %d of %d "
	    "responses) ===\n", body, covered, n, covered, n);
	prompt_add_answer(&out, draft, share, &cut);
	buf_addstr(&out, "=== END OF DRAFT ===");
	free(body);
	return buf_release(&out);
}

/*
 * A peer review: the answers under the labels A, B, ... in the order
 * given (the caller shuffles it), within budget bytes of answers.  The
 * phrase "Rank the responses" is what the test mock recognises.
 */
char *
prompt_review(const char *query, const char *const *answers, int n,
    size_t budget)
{
	size_t		share[HEAVY_MAX_AGENTS];
	struct buf	out;
	int		dropped = 0;

	prompt_shares(answers, n, budget, share);
	buf_init(&out, 0);
	buf_printf(&out, "You are reviewing anonymous responses that were "
	    "written to help answer a question.\n\nQuestion: %s\n\n"
	    "The labels and the order of the responses are random: they say "
	    "nothing about who wrote a response.\n\n", query);
	for (int i = 0; i < n; i++) {
		buf_printf(&out, "=== Response %c ===\n", REVIEW_LABEL(i));
		prompt_add_answer(&out, answers[i], share[i], &dropped);
	}
	buf_printf(&out, "Rank the responses from best to worst by accuracy, "
	    "depth and usefulness for the question. Reply with only a JSON "
	    "array of the %d labels ", n);
	for (int i = 0; i < n; i++)
		buf_printf(&out, "%s\"%c\"", i ? ", " : "", REVIEW_LABEL(i));
	buf_addstr(&out, " put in your order, best first, each label exactly "
	    "once.");
	return buf_release(&out);
}
