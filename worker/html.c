/*
 * A web page as plain text for the model: libxml2's HTML parser (it
 * recovers from the broken markup real pages have, and decodes their
 * charsets to UTF-8), then the text nodes in document order, without
 * script, style and the like, whitespace collapsed, block elements kept
 * apart by a space, cut at a character boundary at the cap.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <string.h>

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>

#include "worker.h"

/*
 * libxml2 is opened at run time, not linked: it brings ICU and the C++
 * runtime, and their mappings made every worker's fork and exit dearer
 * (about 55 us each).  The zygote opens it only when a search backend is
 * configured, so the workers that search inherit it; the others never
 * map it.
 */
static struct {
	__typeof__(htmlReadMemory)		*read_memory;
	__typeof__(xmlDocGetRootElement)	*root;
	__typeof__(xmlFreeDoc)			*free_doc;
	__typeof__(xmlSetGenericErrorFunc)	*set_error;
	__typeof__(xmlStrcasecmp)		*casecmp;
} xml;

/* Opens libxml2 once; -1 if it cannot be. */
int
html_load(void)
{
	void	*h;

	if (xml.read_memory != NULL)
		return 0;
	if ((h = dlopen("libxml2.so.2", RTLD_NOW | RTLD_LOCAL)) == NULL)
		return -1;
	xml.root = (__typeof__(xml.root))dlsym(h, "xmlDocGetRootElement");
	xml.free_doc = (__typeof__(xml.free_doc))dlsym(h, "xmlFreeDoc");
	xml.set_error = (__typeof__(xml.set_error))dlsym(h,
	    "xmlSetGenericErrorFunc");
	xml.casecmp = (__typeof__(xml.casecmp))dlsym(h, "xmlStrcasecmp");
	xml.read_memory = (__typeof__(xml.read_memory))dlsym(h,
	    "htmlReadMemory");
	if (xml.root != NULL && xml.free_doc != NULL && xml.set_error !=
	    NULL && xml.casecmp != NULL && xml.read_memory != NULL)
		return 0;
	memset(&xml, 0, sizeof xml);	/* a stranger library: not used */
	dlclose(h);
	return -1;
}

/* Elements whose content is not text for a reader. */
static const char *html_skip[] = {
	"script", "style", "noscript", "template", "head", "svg", "math",
	"iframe", "object", "embed", "canvas", "select",
};

/* Elements that separate words: text on either side never joins. */
static const char *html_block[] = {
	"p", "div", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2",
	"h3", "h4", "h5", "h6", "table", "tr", "td", "th", "section", "article",
	"header", "footer", "nav", "aside", "main", "blockquote", "pre",
	"title", "form", "figure", "figcaption", "address", "option", "body",
};

struct extract {
	struct buf	*out;
	size_t		 start;		/* where our text begins in out */
	size_t		 max;		/* where it must end, at the latest */
	bool		 space;		/* whitespace seen since the last word */
	bool		 full;
};

static bool
html_in(const char *const *list, size_t n, const xmlChar *name)
{
	for (size_t i = 0; i < n; i++)
		if (xml.casecmp(name, (const xmlChar *)list[i]) == 0)
			return true;
	return false;
}

#define HTML_IN(list, name)	html_in(list, sizeof list / sizeof list[0], name)

static void
html_silent(void *ctx, const char *msg, ...)
{
	(void)ctx; (void)msg;
}

/* Adds one word character, with the space a run of whitespace left. */
static void
html_put(struct extract *x, const char *p, size_t n)
{
	if (x->full)
		return;
	if (x->space && x->out->len > x->start && buf_add(x->out, " ", 1) == -1)
		x->full = true;
	x->space = false;
	if (!x->full && (x->out->len + n > x->max ||
	    buf_add(x->out, p, n) == -1))
		x->full = true;
}

static void
html_text(struct extract *x, const xmlChar *s)
{
	const char	*p = (const char *)s;
	size_t		 n;

	while (*p != '\0' && !x->full) {
		if (isspace((unsigned char)*p)) {
			x->space = true;
			p++;
		} else if ((unsigned char)p[0] == 0xc2 &&
		    (unsigned char)p[1] == 0xa0) {
			x->space = true;	/* U+00A0, no-break space */
			p += 2;
		} else {
			/* One whole UTF-8 character at a time. */
			for (n = 1; (((unsigned char)p[n]) & 0xc0) == 0x80; n++)
				;
			html_put(x, p, n);
			p += n;
		}
	}
}

/* Walks the tree in document order without recursion: pages nest deep. */
static void
html_walk(struct extract *x, xmlNode *root)
{
	xmlNode	*n = root;

	while (n != NULL && !x->full) {
		if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE)
			html_text(x, n->content);
		if (n->type == XML_ELEMENT_NODE && HTML_IN(html_block, n->name))
			x->space = true;
		if (n->children != NULL && (n->type != XML_ELEMENT_NODE ||
		    !HTML_IN(html_skip, n->name))) {
			n = n->children;
			continue;
		}
		while (n != NULL && n != root && n->next == NULL) {
			n = n->parent;
			if (n != NULL && n->type == XML_ELEMENT_NODE &&
			    HTML_IN(html_block, n->name))
				x->space = true;
		}
		n = n == NULL || n == root ? NULL : n->next;
	}
}

/*
 * The text of an HTML page, at most max bytes; charset is the one HTTP
 * named, or NULL.  Returns 1 if the text was cut, 0 if whole, -1 if the
 * page could not be parsed at all.
 */
int
html_to_text(const char *html, size_t len, const char *charset,
    size_t max, struct buf *out)
{
	struct extract	 x = { out, out->len, out->len + max, false, false };
	htmlDocPtr	 doc;
	size_t		 whole;
	int		 opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
	    HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_COMPACT;

	if (len == 0)
		return 0;
	if (len > INT32_MAX || html_load() == -1)
		return -1;
	xml.set_error(NULL, html_silent);
	/* No charset from HTTP: UTF-8 if it is, else the page's own <meta>. */
	if (charset == NULL && text_utf8(html, len, &whole) && whole == len)
		charset = "UTF-8";
	doc = xml.read_memory(html, (int)len, NULL, charset, opts);
	if (doc == NULL && charset != NULL)
		doc = xml.read_memory(html, (int)len, NULL, NULL, opts);
	if (doc == NULL)
		return -1;
	html_walk(&x, xml.root(doc));
	xml.free_doc(doc);
	return x.full ? 1 : 0;
}
