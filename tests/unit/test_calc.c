/* calculate: correct arithmetic, and hostile input answered with errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../worker/worker.h"

static double
ok(const char *expr)
{
	char	err[256];
	double	v = 0;

	cr_assert_eq(calc_eval(expr, &v, err, sizeof err), 0, "%s: %s", expr,
	    err);
	return v;
}

static void
bad(const char *expr, const char *needle)
{
	char	err[256];
	double	v;

	cr_assert_eq(calc_eval(expr, &v, err, sizeof err), -1, "%.40s accepted",
	    expr ? expr : "NULL");
	cr_assert(strstr(err, needle) != NULL, "%.40s: \"%s\" lacks \"%s\"",
	    expr ? expr : "NULL", err, needle);
}

Test(calc, precedence_and_associativity)
{
	cr_assert_float_eq(ok("2+3*4"), 14, 1e-12);
	cr_assert_float_eq(ok("(2+3)*4"), 20, 1e-12);
	cr_assert_float_eq(ok("2^3^2"), 512, 1e-12);
	cr_assert_float_eq(ok("2**3"), 8, 1e-12);
	cr_assert_float_eq(ok("-2^2"), -4, 1e-12);
	cr_assert_float_eq(ok("2^-1"), 0.5, 1e-12);
	cr_assert_float_eq(ok("10-4-3"), 3, 1e-12);
	cr_assert_float_eq(ok("100/10/5"), 2, 1e-12);
	cr_assert_float_eq(ok("7 % 3"), 1, 1e-12);
	cr_assert_float_eq(ok("  1.5e2 + .5 "), 150.5, 1e-12);
}

Test(calc, functions_and_constants)
{
	cr_assert_float_eq(ok("sqrt(16)"), 4, 1e-12);
	cr_assert_float_eq(ok("sin(pi/2)"), 1, 1e-12);
	cr_assert_float_eq(ok("cos(0)"), 1, 1e-12);
	cr_assert_float_eq(ok("tan(0)"), 0, 1e-12);
	cr_assert_float_eq(ok("log(e)"), 1, 1e-12);
	cr_assert_float_eq(ok("log10(1000)"), 3, 1e-12);
	cr_assert_float_eq(ok("exp(0)"), 1, 1e-12);
	cr_assert_float_eq(ok("abs(-3)"), 3, 1e-12);
	cr_assert_float_eq(ok("round(2.5)"), 3, 1e-12);
	cr_assert_float_eq(ok("round(-2.5)"), -3, 1e-12);
	cr_assert_float_eq(ok("min(3, 1, 2)"), 1, 1e-12);
	cr_assert_float_eq(ok("max(3, 1, 2)"), 3, 1e-12);
	cr_assert_float_eq(ok("max(7)"), 7, 1e-12);
}

Test(calc, errors_are_messages)
{
	bad("1/0", "division by zero");
	bad("5 % 0", "modulo by zero");
	bad("sqrt(-1)", "sqrt of a negative");
	bad("log(0)", "log of zero");
	bad("10^400", "result out of range");
	bad("exp(1000)", "result out of range");
	bad("1e999", "result out of range");
	bad("foo + 1", "unknown name 'foo'");
	bad("sqrt(1, 2)", "exactly one argument");
	bad("(1 + 2", "expected ')'");
	bad("2 +", "unexpected end");
	bad("", "empty expression");
	bad(NULL, "no expression");
}

Test(calc, hostile_input)
{
	static char	deep[4001], minus[4002], longexpr[5001];

	memset(deep, '(', sizeof deep - 1);
	bad(deep, "nesting deeper than 64");
	cr_assert_float_eq(ok("((((((((((1))))))))))"), 1, 1e-12);
	memset(minus, '-', sizeof minus - 2);
	minus[sizeof minus - 2] = '1';
	bad(minus, "nesting deeper than 64");
	memset(longexpr, '1', sizeof longexpr - 1);
	bad(longexpr, "longer than 4096");
	bad("2+2; rm -rf /", "unexpected ';'");
	bad("__import__('os')", "unknown name");
	bad("0x10", "unexpected 'x'");
	bad("nan", "unknown name 'nan'");
	bad("inf", "unknown name 'inf'");
}

Test(calc, error_always_terminated)
{
	char	err[8];
	double	v;

	memset(err, 'z', sizeof err);
	cr_assert_eq(calc_eval("1/0", &v, err, sizeof err), -1);
	cr_assert_eq(err[7], '\0');
}
