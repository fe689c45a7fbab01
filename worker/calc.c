/*
 * The calculate tool: arithmetic by recursive descent over the string.
 * Nothing is executed; every error (syntax, domain, overflow, nesting) is
 * a message for the model, never a crash or a NaN.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define CALC_MAX_LEN	4096
#define CALC_MAX_DEPTH	64
#define CALC_MAX_ARGS	64

struct calc {
	const char	*s;
	const char	*p;
	int		 depth;
	char		*err;
	size_t		 errlen;
	int		 failed;
};

static int	calc_expr(struct calc *, double *);

static int
calc_error(struct calc *c, const char *fmt, const char *arg)
{
	char	msg[128];

	if (c->failed)
		return -1;
	snprintf(msg, sizeof msg, fmt, arg);
	snprintf(c->err, c->errlen, "%s at position %d", msg,
	    (int)(c->p - c->s) + 1);
	c->failed = 1;
	return -1;
}

static void
calc_space(struct calc *c)
{
	while (isspace((unsigned char)*c->p))
		c->p++;
}

static int
calc_finite(struct calc *c, double v)
{
	if (!isfinite(v)) {
		snprintf(c->err, c->errlen, "result out of range");
		c->failed = 1;
		return -1;
	}
	return 0;
}

/* Nesting guard shared by parentheses, unary chains and calls. */
static int
calc_enter(struct calc *c)
{
	if (++c->depth > CALC_MAX_DEPTH) {
		snprintf(c->err, c->errlen, "nesting deeper than %d levels",
		    CALC_MAX_DEPTH);
		c->failed = 1;
		return -1;
	}
	return 0;
}

static int
calc_number(struct calc *c, double *out)
{
	const char	*q = c->p;
	char		 num[64], *end;

	while (isdigit((unsigned char)*q) || *q == '.')
		q++;
	if (q == c->p || (q - c->p == 1 && *c->p == '.'))
		return calc_error(c, "expected a number", NULL);
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!isdigit((unsigned char)*q))
			return calc_error(c, "malformed exponent", NULL);
	}
	while (isdigit((unsigned char)*q))
		q++;
	if ((size_t)(q - c->p) >= sizeof num)
		return calc_error(c, "number too long", NULL);
	/* strtod sees only the span checked above: no hex, inf or nan. */
	memcpy(num, c->p, (size_t)(q - c->p));
	num[q - c->p] = '\0';
	*out = strtod(num, &end);
	if (*end != '\0')
		return calc_error(c, "malformed number", NULL);
	c->p = q;
	return calc_finite(c, *out);
}

static int
calc_args(struct calc *c, const char *name, double *argv, int *argc)
{
	*argc = 0;
	calc_space(c);
	if (*c->p != '(')
		return calc_error(c, "expected '(' after %s", name);
	c->p++;
	for (;;) {
		if (*argc == CALC_MAX_ARGS)
			return calc_error(c, "too many arguments to %s", name);
		if (calc_expr(c, &argv[(*argc)++]) == -1)
			return -1;
		calc_space(c);
		if (*c->p == ',') {
			c->p++;
			continue;
		}
		if (*c->p != ')')
			return calc_error(c, "expected ')'", NULL);
		c->p++;
		return 0;
	}
}

static double
calc_round(double v)
{
	return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
}

static const struct {
	const char	*name;
	double		(*fn)(double);
} calc_unary[] = {
	{ "sqrt", sqrt }, { "sin", sin }, { "cos", cos }, { "tan", tan },
	{ "log", log }, { "log10", log10 }, { "exp", exp }, { "abs", fabs },
	{ "round", calc_round },
};

static int
calc_domain(struct calc *c, const char *name, double x)
{
	if (strcmp(name, "sqrt") == 0 && x < 0)
		return calc_error(c, "sqrt of a negative number", NULL);
	if (strncmp(name, "log", 3) == 0 && x <= 0)
		return calc_error(c, "%s of zero or a negative number", name);
	return 0;
}

static int
calc_call(struct calc *c, const char *name, double *out)
{
	double	argv[CALC_MAX_ARGS];
	int	argc;

	if (calc_args(c, name, argv, &argc) == -1)
		return -1;
	if (strcmp(name, "min") == 0 || strcmp(name, "max") == 0) {
		*out = argv[0];
		for (int i = 1; i < argc; i++)
			if (name[1] == 'i' ? argv[i] < *out : argv[i] > *out)
				*out = argv[i];
		return 0;
	}
	for (size_t i = 0; i < sizeof calc_unary / sizeof *calc_unary; i++) {
		if (strcmp(name, calc_unary[i].name) != 0)
			continue;
		if (argc != 1)
			return calc_error(c, "%s takes exactly one argument",
			    name);
		if (calc_domain(c, name, argv[0]) == -1)
			return -1;
		*out = calc_unary[i].fn(argv[0]);
		return calc_finite(c, *out);
	}
	return calc_error(c, "unknown function '%s'", name);
}

static int
calc_name(struct calc *c, double *out)
{
	char		 name[16];
	const char	*start = c->p;
	size_t		 n = 0;

	while (isalnum((unsigned char)*c->p) || *c->p == '_')
		c->p++;
	n = (size_t)(c->p - start);
	snprintf(name, sizeof name, "%.*s", (int)(n < 15 ? n : 15), start);
	calc_space(c);
	if (*c->p == '(') {
		if (n < 16 && (strcmp(name, "min") == 0 ||
		    strcmp(name, "max") == 0))
			return calc_call(c, name, out);
		for (size_t i = 0; n < 16 &&
		    i < sizeof calc_unary / sizeof *calc_unary; i++)
			if (strcmp(name, calc_unary[i].name) == 0)
				return calc_call(c, name, out);
	} else if (strcmp(name, "pi") == 0 && n == 2) {
		*out = M_PI;
		return 0;
	} else if (strcmp(name, "e") == 0 && n == 1) {
		*out = M_E;
		return 0;
	}
	c->p = start;
	return calc_error(c, "unknown name '%s'", name);
}

/* primary: number | name | name(args) | ( expr ) */
static int
calc_primary(struct calc *c, double *out)
{
	int	rc;

	calc_space(c);
	if (*c->p == '(') {
		c->p++;
		if (calc_enter(c) == -1 || calc_expr(c, out) == -1)
			return -1;
		c->depth--;
		calc_space(c);
		if (*c->p != ')')
			return calc_error(c, "expected ')'", NULL);
		c->p++;
		return 0;
	}
	if (isalpha((unsigned char)*c->p) || *c->p == '_') {
		if (calc_enter(c) == -1)
			return -1;
		rc = calc_name(c, out);
		c->depth--;
		return rc;
	}
	if (*c->p == '\0')
		return calc_error(c, "unexpected end of expression", NULL);
	return calc_number(c, out);
}

static int	calc_unary_expr(struct calc *, double *);

/* power: primary [ (^ | **) unary ]  -- right-associative */
static int
calc_power(struct calc *c, double *out)
{
	double	rhs;

	if (calc_primary(c, out) == -1)
		return -1;
	calc_space(c);
	if (*c->p == '^' || (c->p[0] == '*' && c->p[1] == '*')) {
		c->p += *c->p == '^' ? 1 : 2;
		if (calc_unary_expr(c, &rhs) == -1)
			return -1;
		*out = pow(*out, rhs);
		return calc_finite(c, *out);
	}
	return 0;
}

/* unary: [+|-] unary | power  -- so -2^2 is -(2^2) */
static int
calc_unary_expr(struct calc *c, double *out)
{
	int	rc;

	calc_space(c);
	if (*c->p != '-' && *c->p != '+')
		return calc_power(c, out);
	if (calc_enter(c) == -1)
		return -1;
	rc = *c->p++ == '-';
	if (calc_unary_expr(c, out) == -1)
		return -1;
	c->depth--;
	if (rc)
		*out = -*out;
	return 0;
}

static int
calc_term(struct calc *c, double *out)
{
	double	rhs;
	char	op;

	if (calc_unary_expr(c, out) == -1)
		return -1;
	for (;;) {
		calc_space(c);
		op = *c->p;
		if ((op != '*' && op != '/' && op != '%') || c->p[1] == '*')
			return 0;
		c->p++;
		if (calc_unary_expr(c, &rhs) == -1)
			return -1;
		if (op != '*' && rhs == 0)
			return calc_error(c, op == '/' ? "division by zero" :
			    "modulo by zero", NULL);
		*out = op == '*' ? *out * rhs : op == '/' ? *out / rhs :
		    fmod(*out, rhs);
		if (calc_finite(c, *out) == -1)
			return -1;
	}
}

static int
calc_expr(struct calc *c, double *out)
{
	double	rhs;
	char	op;

	if (calc_term(c, out) == -1)
		return -1;
	for (;;) {
		calc_space(c);
		op = *c->p;
		if (op != '+' && op != '-')
			return 0;
		c->p++;
		if (calc_term(c, &rhs) == -1)
			return -1;
		*out = op == '+' ? *out + rhs : *out - rhs;
		if (calc_finite(c, *out) == -1)
			return -1;
	}
}

int
calc_eval(const char *expr, double *out, char *err, size_t errlen)
{
	struct calc	c = { expr, expr, 0, err, errlen, 0 };

	if (errlen > 0)
		err[0] = '\0';
	if (expr == NULL || strlen(expr) > CALC_MAX_LEN) {
		snprintf(err, errlen, expr == NULL ? "no expression" :
		    "expression longer than %d characters", CALC_MAX_LEN);
		return -1;
	}
	calc_space(&c);
	if (*c.p == '\0') {
		snprintf(err, errlen, "empty expression");
		return -1;
	}
	if (calc_expr(&c, out) == -1)
		return -1;
	calc_space(&c);
	if (*c.p != '\0')
		return calc_error(&c, "unexpected '%.1s'", c.p);
	if (*out == 0)
		*out = 0;	/* no "-0" */
	return 0;
}
