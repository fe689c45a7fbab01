/* Peer review: the prompt and its shuffled labels, the strict ranking
 * parser, the supervisor's label check and the aggregate ranking. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../supervisor/supervisor.h"
#include "../../worker/worker.h"

/* ---- the review prompt and the shuffle ---- */

Test(review_prompt, labels_follow_the_order_given)
{
	const char	*answers[3] = { "first text", "second text", "third text" };
	char		*s = prompt_review("Why is the sky blue?", answers, 3, 10000);
	const char	*a, *b, *c;

	cr_assert(strstr(s, "Question: Why is the sky blue?") != NULL, "%s", s);
	a = strstr(s, "=== Response A ===\nfirst text");
	b = strstr(s, "=== Response B ===\nsecond text");
	c = strstr(s, "=== Response C ===\nthird text");
	cr_assert(a && b && c && a < b && b < c, "%s", s);
	cr_assert_null(strstr(s, "Response D"));
	cr_assert(strstr(s, "Rank the responses") != NULL);
	cr_assert(strstr(s, "the 3 labels \"A\", \"B\", \"C\" put in your order") !=
	    NULL, "%s", s);
	cr_assert_null(strstr(s, "agent"), "nothing names an agent: %s", s);
	free(s);
}

Test(review_prompt, long_answers_share_the_budget)
{
	char		 big[3000];
	const char	*answers[2] = { "short", big };
	char		*s;

	memset(big, 'y', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	s = prompt_review("q", answers, 2, 1000);
	cr_assert(strstr(s, "=== Response A ===\nshort\n") != NULL, "%s", s);
	cr_assert(strstr(s, "[truncated: 995 of 2999 bytes kept]") != NULL,
	    "%s", s);
	free(s);
}

Test(review_prompt, shuffle_is_a_permutation_and_varies)
{
	int	seen[4][4] = { { 0 } }, v[4], identity = 0;

	for (int run = 0; run < 2000; run++) {
		int	count[4] = { 0 };

		for (int i = 0; i < 4; i++)
			v[i] = i;
		ranking_shuffle(v, 4);
		for (int i = 0; i < 4; i++) {
			cr_assert(v[i] >= 0 && v[i] < 4);
			count[v[i]]++;
			seen[i][v[i]]++;
		}
		for (int i = 0; i < 4; i++)
			cr_assert_eq(count[i], 1, "not a permutation");
		identity += v[0] == 0 && v[1] == 1 && v[2] == 2 && v[3] == 3;
	}
	/* Every answer lands at every label, about a quarter of the time. */
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			cr_assert(seen[i][j] > 350 && seen[i][j] < 650,
			    "answer %d at label %d: %d of 2000", j, i,
			    seen[i][j]);
	cr_assert_lt(identity, 200, "the identity order %d times of 2000",
	    identity);
}

/* ---- the worker's strict parser ---- */

static int
parse(const char *text, unsigned n, unsigned *order, char *err)
{
	return review_parse(text, n, order, err, 256);
}

Test(review_parse, plain_and_labelled_forms)
{
	unsigned	o[4];
	char		err[256];

	cr_assert_eq(parse("[\"C\", \"A\", \"B\"]", 3, o, err), 0, "%s", err);
	cr_assert(o[0] == 2 && o[1] == 0 && o[2] == 1);
	cr_assert_eq(parse("[\"Response B\", \" response a \"]", 2, o, err), 0,
	    "%s", err);
	cr_assert(o[0] == 1 && o[1] == 0);
}

Test(review_parse, prose_and_fences_around_the_array)
{
	unsigned	o[3];
	char		err[256];
	const char	*text = "Having read them [carefully]:\n```json\n"
	    "[\"B\", \"C\", \"A\"]\n```\nB is the most thorough.";

	cr_assert_eq(parse(text, 3, o, err), 0, "%s", err);
	cr_assert(o[0] == 1 && o[1] == 2 && o[2] == 0);
}

struct bad { const char *text; unsigned n; const char *why; };

Test(review_parse, every_label_exactly_once)
{
	static const struct bad cases[] = {
		{ "[\"A\", \"B\"]", 3, "label C is missing" },
		{ "[\"A\", \"B\", \"A\"]", 3, "label A appears twice" },
		{ "[\"A\", \"b\", \"Response A\"]", 3, "label A appears twice" },
		{ "[\"A\", \"B\", \"C\", \"D\"]", 3, "expected 3 labels, got 4" },
		{ "[\"A\", \"D\", \"B\"]", 3,
		  "item 2 \"D\" is not one of the labels A to C" },
		{ "[\"A\", \"best\"]", 2,
		  "item 2 \"best\" is not one of the labels A to B" },
		{ "[\"A\", 2]", 2, "item 2 is not a string" },
		{ "[]", 2, "the array is empty" },
		{ "", 2, "no JSON array found" },
		{ "A is better than B.", 2, "no JSON array found" },
		{ "{\"ranking\": 1}", 2, "no JSON array found" },
		{ "[\"A\", \"B\"", 2, "no JSON array found" },
	};
	unsigned	o[HEAVY_MAX_AGENTS];
	char		err[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cr_assert_eq(parse(cases[i].text, cases[i].n, o, err), -1,
		    "accepted: %s", cases[i].text);
		cr_assert_str_eq(err, cases[i].why, "for %s", cases[i].text);
	}
}

/* ---- the supervisor's side: labels back, and the aggregate ---- */

Test(ranking, labels_from_a_worker_are_checked_again)
{
	char	*ok[] = { "B", "C", "A" }, *dup[] = { "A", "A", "B" };
	char	*far[] = { "A", "D", "B" }, *word[] = { "A", "BB", "C" };
	int	 l[3];

	cr_assert_eq(ranking_labels(ok, 3, 3, l), 0);
	cr_assert(l[0] == 1 && l[1] == 2 && l[2] == 0);
	cr_assert_eq(ranking_labels(ok, 2, 3, l), -1, "too few texts");
	cr_assert_eq(ranking_labels(dup, 3, 3, l), -1);
	cr_assert_eq(ranking_labels(far, 3, 3, l), -1);
	cr_assert_eq(ranking_labels(word, 3, 3, l), -1);
}

Test(ranking, mean_normalised_position)
{
	/* Four agents, each review ranks the three others. */
	struct ranking_review	rv[4] = {
		{ 3, { 2, 1, 3 } }, { 3, { 2, 0, 3 } },
		{ 3, { 0, 1, 3 } }, { 3, { 2, 0, 1 } },
	};
	struct ranking_tally	t[4];

	ranking_tally(rv, 4, 4, t);
	cr_assert_eq(t[2].rank, 1);
	cr_assert_float_eq(t[2].score, 1.0, 1e-9);
	cr_assert_eq(t[0].rank, 2);
	cr_assert_float_eq(t[0].score, 2.0 / 3, 1e-9);
	cr_assert_eq(t[1].rank, 3);
	cr_assert_eq(t[3].rank, 4);
	cr_assert_float_eq(t[3].score, 0.0, 1e-9);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(t[i].reviews, 3);
}

Test(ranking, ties_go_to_the_lower_agent_index)
{
	/* Agents 1 and 3 each win one review and lose one: a tie. */
	struct ranking_review	rv[2] = { { 2, { 3, 1 } }, { 2, { 1, 3 } } };
	struct ranking_tally	t[4];

	ranking_tally(rv, 2, 4, t);
	cr_assert_float_eq(t[1].score, t[3].score, 1e-12);
	cr_assert_eq(t[1].rank, 1);
	cr_assert_eq(t[3].rank, 2);
	cr_assert_eq(t[0].rank, 0, "never shown: unranked");
	cr_assert_eq(t[0].reviews, 0);
	cr_assert_eq(t[2].rank, 0);
}

Test(ranking, failed_reviews_are_left_out)
{
	/*
	 * Three agents; reviewer 2 failed, so only the rankings of reviewers
	 * 1 (saw 2, 3) and 3 (saw 1, 2) count: agent 2 is shown twice.
	 */
	struct ranking_review	rv[2] = { { 2, { 1, 2 } }, { 2, { 0, 1 } } };
	struct ranking_tally	t[3];

	ranking_tally(rv, 2, 3, t);
	cr_assert(t[0].rank == 1 && t[0].reviews == 1);
	cr_assert(t[1].rank == 2 && t[1].reviews == 2);
	cr_assert_float_eq(t[1].score, 0.5, 1e-9);
	cr_assert(t[2].rank == 3 && t[2].reviews == 1);
	ranking_tally(rv, 0, 3, t);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(t[i].rank, 0, "no valid review: nothing ranked");
}

Test(ranking, reviews_of_different_sizes_weigh_the_same)
{
	/* Last of two and last of four both score 0. */
	struct ranking_review	rv[2] = { { 2, { 1, 0 } },
	    { 4, { 1, 2, 3, 0 } } };
	struct ranking_tally	t[4];

	ranking_tally(rv, 2, 4, t);
	cr_assert_float_eq(t[0].score, 0.0, 1e-9);
	cr_assert_float_eq(t[1].score, 1.0, 1e-9);
	cr_assert_eq(t[0].rank, 4);
}

/* ---- the synthesis told the ranking ---- */

Test(ranking, synthesis_prompt_lists_ranks)
{
	struct heavy_config	 cfg;
	const char		*answers[3] = { "best one", "second one", "lost" };
	int			 ranks[3] = { 1, 2, 0 }, dropped;
	char			*s;

	config_defaults(&cfg);
	s = prompt_synthesis_ranked(&cfg, answers, ranks, 3, 100000, &dropped);
	cr_assert(strstr(s, "listed best first") != NULL, "%s", s);
	cr_assert(strstr(s, "=== AGENT 1 RESPONSE (peer-review rank 1 of 2) ===\n"
	    "best one") != NULL, "%s", s);
	cr_assert(strstr(s, "=== AGENT 2 RESPONSE (peer-review rank 2 of 2) ===\n"
	    "second one") != NULL, "%s", s);
	cr_assert(strstr(s, "=== AGENT 3 RESPONSE (not ranked") != NULL, "%s", s);
	free(s);
	s = prompt_synthesis_ranked(&cfg, answers, NULL, 3, 100000, &dropped);
	cr_assert_null(strstr(s, "rank"), "plain synthesis: %s", s);
	free(s);
	config_clear(&cfg);
}

/* ---- the aggregation_strategy argument ---- */

Test(ranking, strategy_argument_checked)
{
	static const char	*bad[] = {
		"{\"query\":\"q\",\"aggregation_strategy\":\"voting\"}",
		"{\"query\":\"q\",\"aggregation_strategy\":\"Ranked\"}",
		"{\"query\":\"q\",\"aggregation_strategy\":1}",
	};
	struct heavy_config	 cfg;
	struct task_params	 p;
	struct json_object	*a;
	char			 err[256];

	config_defaults(&cfg);
	a = json_tokener_parse("{\"query\":\"q\",\"aggregation_strategy\":\"best\"}");
	cr_assert_eq(tool_orchestrate_args(&cfg, a, &p, err, sizeof err), 0,
	    "%s", err);
	cr_assert_str_eq(p.strategy, "best");
	task_params_clear(&p);
	json_object_put(a);
	a = json_tokener_parse("{\"query\":\"q\",\"aggregation_strategy\":null}");
	cr_assert_eq(tool_orchestrate_args(&cfg, a, &p, err, sizeof err), 0);
	cr_assert_null(p.strategy, "null: the configured strategy");
	task_params_clear(&p);
	json_object_put(a);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		a = json_tokener_parse(bad[i]);
		cr_assert_eq(tool_orchestrate_args(&cfg, a, &p, err,
		    sizeof err), -1, "accepted %s", bad[i]);
		cr_assert_str_eq(err, "invalid argument 'aggregation_strategy': "
		    "expected one of consensus, ranked, best, incremental");
		json_object_put(a);
	}
	config_clear(&cfg);
}

/* ---- a review job on the wire ---- */

static int
review_job_decodes(uint32_t shown)
{
	struct job	in = { 0 }, out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;
	int		rc;

	in.role = ROLE_REVIEW;
	in.index = 2;
	in.num_questions = shown;
	in.api_key = "k";
	in.base_url = "http://127.0.0.1:1/v1";
	in.model = "m";
	in.system_prompt = "";
	in.prompt = "Rank the responses";
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_OK);
	m_reader_init(&r, b.data + PROTO_HDR_LEN, hdr.len);
	rc = job_decode(&r, &out) == 0 && m_end(&r) == 0 ? 0 : -1;
	if (rc == 0) {
		cr_assert_eq(out.role, ROLE_REVIEW);
		cr_assert_eq(out.num_questions, shown);
		job_clear(&out);
	}
	buf_free(&b);
	return rc;
}

Test(review_parse, review_jobs_show_two_to_sixteen_answers)
{
	cr_assert_eq(review_job_decodes(2), 0);
	cr_assert_eq(review_job_decodes(HEAVY_MAX_AGENTS), 0);
	cr_assert_eq(review_job_decodes(1), -1, "one answer ranks nothing");
	cr_assert_eq(review_job_decodes(0), -1);
	cr_assert_eq(review_job_decodes(HEAVY_MAX_AGENTS + 1), -1);
}
