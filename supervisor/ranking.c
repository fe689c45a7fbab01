/*
 * Peer review, the supervisor's side: the order each reviewer sees the
 * answers in, the labels a reviewer returns, and the aggregate ranking.
 */
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

#define RANKING_EPSILON	1e-9	/* scores this close are a tie */

/* Fisher-Yates over arc4random_uniform: every order equally likely, so
 * neither a label nor a position says whose answer it is. */
void
ranking_shuffle(int *v, int n)
{
	int	j, tmp;

	for (int i = n - 1; i > 0; i--) {
		j = (int)arc4random_uniform((uint32_t)i + 1);
		tmp = v[i];
		v[i] = v[j];
		v[j] = tmp;
	}
}

/*
 * The worker's texts, one label each, best first, into label numbers.
 * The worker validated them already; a worker is not trusted, so every
 * shown label must appear exactly once here too.
 */
int
ranking_labels(char *const *texts, uint32_t ntexts, int n, int *labels)
{
	bool	seen[HEAVY_MAX_AGENTS] = { false };
	int	k;

	if (n < 2 || n > HEAVY_MAX_AGENTS || ntexts != (uint32_t)n)
		return -1;
	for (int i = 0; i < n; i++) {
		if (texts[i] == NULL || texts[i][0] == '\0' ||
		    texts[i][1] != '\0')
			return -1;
		k = texts[i][0] - 'A';
		if (k < 0 || k >= n || seen[k])
			return -1;
		seen[k] = true;
		labels[i] = k;
	}
	return 0;
}

/*
 * The aggregate: each agent's score is the mean, over the valid reviews
 * that showed its answer, of 1 - position / (shown - 1) -- the mean
 * normalised position, turned so that 1 is first in every review and 0
 * last in every review.  Normalising makes reviews of different sizes
 * weigh the same.  Ranks go by score, ties to the lower agent index; an
 * agent no valid review showed gets rank 0 (unranked).
 */
void
ranking_tally(const struct ranking_review *rv, int nreviews, int nagents,
    struct ranking_tally *out)
{
	double	sum[HEAVY_MAX_AGENTS] = { 0 };
	int	order[HEAVY_MAX_AGENTS], n = 0, a, j;

	memset(out, 0, (size_t)nagents * sizeof *out);
	for (int r = 0; r < nreviews; r++) {
		for (int p = 0; p < rv[r].n; p++) {
			a = rv[r].order[p];
			sum[a] += 1.0 - (double)p / (rv[r].n - 1);
			out[a].reviews++;
		}
	}
	for (a = 0; a < nagents; a++) {
		if (out[a].reviews == 0)
			continue;
		out[a].score = sum[a] / out[a].reviews;
		/* Insertion by score, then index: a stable, total order. */
		for (j = n; j > 0 && out[order[j - 1]].score < out[a].score -
		    RANKING_EPSILON; j--)
			order[j] = order[j - 1];
		order[j] = a;
		n++;
	}
	for (j = 0; j < n; j++)
		out[order[j]].rank = j + 1;
}
