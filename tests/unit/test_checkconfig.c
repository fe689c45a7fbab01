/*
 * --check-config's output (and heavy://config's) is YAML: it parses back
 * with libyaml, values with YAML's own punctuation included.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "../../supervisor/supervisor.h"

/* The flat mapping at the root: its value for key, or NULL. */
static yaml_node_t *
lookup(yaml_document_t *doc, const char *key)
{
	yaml_node_t		*root = yaml_document_get_root_node(doc), *k;
	yaml_node_pair_t	*p;

	cr_assert(root != NULL && root->type == YAML_MAPPING_NODE);
	for (p = root->data.mapping.pairs.start;
	    p < root->data.mapping.pairs.top; p++) {
		k = yaml_document_get_node(doc, p->key);
		if (k->type == YAML_SCALAR_NODE &&
		    strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *
scalar(yaml_document_t *doc, const char *key)
{
	yaml_node_t	*n = lookup(doc, key);

	cr_assert(n != NULL, "no %s", key);
	cr_assert_eq(n->type, YAML_SCALAR_NODE, "%s is not a scalar", key);
	return (const char *)n->data.scalar.value;
}

static void
parse(const char *text, yaml_document_t *doc)
{
	yaml_parser_t	parser;

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text,
	    strlen(text));
	cr_assert(yaml_parser_load(&parser, doc), "line %zu: %s\n%s",
	    parser.problem_mark.line + 1, parser.problem, text);
	yaml_parser_delete(&parser);
}

Test(checkconfig, output_parses_back_as_yaml)
{
	static const char	*odd = "a: b # not a comment \"q\" \\ end";
	struct heavy_config	 c;
	yaml_document_t		 doc;
	yaml_node_t		*seq;
	char			*text = NULL, err[512], **models;
	size_t			 len = 0;
	FILE			*f = open_memstream(&text, &len);
	bool			 sandbox;

	config_defaults(&c);
	config_set_str(&c.model, odd);
	config_set_str(&c.search_user_agent, "yes");
	c.state_dir = xstrdup("/tmp/two\nlines");
	models = xcalloc(2, sizeof *models);
	models[0] = xstrdup("x/one,two");
	models[1] = xstrdup("[y]");
	config_set_agent_models(&c, models, 2);
	config_print(&c, "test: file", f);
	sandbox = features_init(&c, false, err, sizeof err) == 0;
	if (sandbox)
		features_print(f);
	fclose(f);
	parse(text, &doc);
	cr_assert_str_eq(scalar(&doc, "model"), odd);
	cr_assert_str_eq(scalar(&doc, "search.user_agent"), "yes");
	cr_assert_str_eq(scalar(&doc, "state_dir"), "/tmp/two\nlines");
	cr_assert_str_eq(scalar(&doc, "limits.max_workers"), "auto");
	cr_assert_str_eq(scalar(&doc, "base_url"),
	    "https://openrouter.ai/api/v1");
	cr_assert_str_eq(scalar(&doc, "planner_model"), odd);
	cr_assert_str_eq(scalar(&doc, "search.backend"), "none");
	seq = lookup(&doc, "agent_models");
	cr_assert(seq != NULL && seq->type == YAML_SEQUENCE_NODE);
	cr_assert_eq(seq->data.sequence.items.top -
	    seq->data.sequence.items.start, 2);
	cr_assert_str_eq((char *)yaml_document_get_node(&doc,
	    seq->data.sequence.items.start[0])->data.scalar.value, "x/one,two");
	if (sandbox) {
		cr_assert(*scalar(&doc, "sandbox.filesystem") != '\0');
		cr_assert_str_eq(scalar(&doc, "sandbox.no_new_privs"), "on");
	}
	yaml_document_delete(&doc);
	free(text);
	config_clear(&c);
}
