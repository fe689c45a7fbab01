/* The planner's output: strict validation, tolerant of fences and prose. */
#include <criterion/criterion.h>

#include "../../worker/worker.h"

static int
parse(const char *text, unsigned n, char ***qs, char *err)
{
	return plan_parse(text, n, qs, err, 256);
}

Test(plan, plain_array)
{
	char	**qs, err[256];

	cr_assert_eq(parse("[\"a?\", \"b?\"]", 2, &qs, err), 0);
	cr_assert_str_eq(qs[0], "a?");
	cr_assert_str_eq(qs[1], "b?");
	plan_free(qs, 2);
}

Test(plan, fences_and_prose_tolerated)
{
	char	**qs, err[256];
	const char *text = "Sure! Here are the questions [as asked]:\n"
	    "```json\n[\"  one  \", \"two\", \"three\"]\n```\nGood luck.";

	cr_assert_eq(parse(text, 3, &qs, err), 0, "%s", err);
	cr_assert_str_eq(qs[0], "one", "items are trimmed");
	cr_assert_str_eq(qs[2], "three");
	plan_free(qs, 3);
}

Test(plan, wrong_count)
{
	char	**qs, err[256];

	cr_assert_eq(parse("[\"a\", \"b\", \"c\"]", 4, &qs, err), -1);
	cr_assert_str_eq(err, "expected 4 questions, got 3");
}

Test(plan, no_array)
{
	char	**qs, err[256];

	cr_assert_eq(parse("I think the questions are: first, ...", 2, &qs,
	    err), -1);
	cr_assert_str_eq(err, "no JSON array found");
	cr_assert_eq(parse("[\"unterminated", 1, &qs, err), -1);
}

Test(plan, non_string_empty_and_duplicate_items)
{
	char	**qs, err[256];

	cr_assert_eq(parse("[\"a\", 2]", 2, &qs, err), -1);
	cr_assert_str_eq(err, "item 2 is not a string");
	cr_assert_eq(parse("[\"a\", \"   \"]", 2, &qs, err), -1);
	cr_assert_str_eq(err, "item 2 is empty");
	cr_assert_eq(parse("[\"Same\", \"same\"]", 2, &qs, err), -1);
	cr_assert_str_eq(err, "item 2 repeats item 1");
}

Test(plan, object_instead_of_array)
{
	char	**qs, err[256];

	cr_assert_eq(parse("{\"questions\": 1}", 1, &qs, err), -1);
}
