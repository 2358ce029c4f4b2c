/*
 * cda.c - see cda.h. XPath over the parsed tree, relative to each block.
 */
#include "cda.h"
#include "utf8.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_HL7 "urn:hl7-org:v3"
#define NS_PS320 "urn:dicom-org:ps3-20"

/* The string value of expr (relative to node) into out; "" when none. */
static void xp_str(xmlXPathContextPtr x, xmlNodePtr node, const char *expr,
                   char *out, size_t cap)
{
	xmlXPathObjectPtr r;

	out[0] = '\0';
	x->node = node;
	r = xmlXPathEvalExpression((const xmlChar *)expr, x);
	if (r == NULL)
		return;
	if (r->type == XPATH_NODESET && r->nodesetval != NULL &&
	    r->nodesetval->nodeNr > 0) {
		xmlChar *v = xmlNodeGetContent(r->nodesetval->nodeTab[0]);

		if (v != NULL) {
			/* trimmed: element text may be indented */
			const char *s = (const char *)v;
			size_t n;

			while (*s == ' ' || *s == '\n' || *s == '\r' ||
			       *s == '\t')
				s++;
			n = strlen(s);
			while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' ||
			                 s[n - 1] == '\r' || s[n - 1] == '\t'))
				n--;
			snprintf(out, cap, "%.*s", (int)n, s);
			utf8_clean(out); /* the cut may split a character */
			xmlFree(v);
		}
	}
	xmlXPathFreeObject(r);
}

/* The nodes of expr (relative to node); free with xmlXPathFreeObject. */
static xmlXPathObjectPtr xp_nodes(xmlXPathContextPtr x, xmlNodePtr node,
                                  const char *expr, int *n)
{
	xmlXPathObjectPtr r;

	x->node = node;
	r = xmlXPathEvalExpression((const xmlChar *)expr, x);
	*n = r && r->type == XPATH_NODESET && r->nodesetval
	             ? r->nodesetval->nodeNr
	             : 0;
	return r;
}

static void read_code(xmlXPathContextPtr x, xmlNodePtr node, const char *expr,
                      struct cda_code *c)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/@code", expr);
	xp_str(x, node, path, c->code, sizeof(c->code));
	snprintf(path, sizeof(path), "%s/@codeSystem", expr);
	xp_str(x, node, path, c->system, sizeof(c->system));
	snprintf(path, sizeof(path), "%s/@displayName", expr);
	xp_str(x, node, path, c->display, sizeof(c->display));
}

/* A person (assignedAuthor, assignedEntity) at expr. */
static void read_person(xmlXPathContextPtr x, xmlNodePtr node, const char *expr,
                        struct cda_person *p)
{
	static const struct {
		const char *tail;
		size_t off, size;
	} f[] = {
#define F(t, m)                                                                \
	{ t, offsetof(struct cda_person, m),                                   \
	  sizeof(((struct cda_person *)0)->m) }
		F("h:id/@extension", id),
		F("h:id/@root", id_root),
		F("h:assignedPerson/h:name/h:family", family),
		F("h:assignedPerson/h:name/h:given", given),
		F("h:assignedPerson/h:name/h:prefix", prefix),
		F("h:representedOrganization/h:id/@extension", org_id),
		F("h:representedOrganization/h:id/@root", org_root),
		F("h:representedOrganization/h:name", org_name),
#undef F
	};
	char path[256];

	for (size_t i = 0; i < sizeof(f) / sizeof(*f); i++) {
		snprintf(path, sizeof(path), "%s/%s", expr, f[i].tail);
		xp_str(x, node, path, (char *)p + f[i].off, f[i].size);
	}
	snprintf(path, sizeof(path), "%s/h:code", expr);
	read_code(x, node, path, &p->role);
}

/* A translation of the serviceEvent code from the given code system. */
static void read_translation(xmlXPathContextPtr x, xmlNodePtr ev,
                             const char *system, struct cda_code *c)
{
	char expr[160];

	snprintf(expr, sizeof(expr), "h:code/h:translation[@codeSystem='%s']",
	         system);
	read_code(x, ev, expr, c);
}

static void read_event(xmlXPathContextPtr x, xmlNodePtr ev, struct cda_event *e)
{
	int n;
	xmlXPathObjectPtr ids = xp_nodes(x, ev, "h:id/@root", &n);

	for (int i = 0; i < n && e->nstudies < CDA_MAX_IDS; i++) {
		xmlChar *v = xmlNodeGetContent(ids->nodesetval->nodeTab[i]);

		if (v != NULL && v[0] != '\0')
			snprintf(e->study_uid[e->nstudies++],
			         sizeof(e->study_uid[0]), "%s", (char *)v);
		xmlFree(v);
	}
	xmlXPathFreeObject(ids);
	read_code(x, ev, "h:code", &e->code);
	read_translation(x, ev, "1.2.250.1.213.2.5", &e->ccam);
	read_translation(x, ev, "1.2.840.10008.2.16.4", &e->modality);
	read_translation(x, ev, "2.16.840.1.113883.6.96", &e->region);
	xp_str(x, ev, "h:effectiveTime/h:low/@value", e->start,
	       sizeof(e->start));
	xp_str(x, ev, "h:effectiveTime/h:high/@value", e->end, sizeof(e->end));
	read_person(x, ev, "h:performer/h:assignedEntity", &e->performer);
}

static void read_order(xmlXPathContextPtr x, xmlNodePtr o, struct cda_order *r)
{
	xp_str(x, o, "h:id/@extension", r->id, sizeof(r->id));
	xp_str(x, o, "h:id/@root", r->id_root, sizeof(r->id_root));
	xp_str(x, o, "ps3-20:accessionNumber/@extension", r->accession,
	       sizeof(r->accession));
	xp_str(x, o, "ps3-20:accessionNumber/@root", r->accession_root,
	       sizeof(r->accession_root));
}

int cda_parse(const char *xml, size_t len, struct cda_info *out, char *err,
              size_t errlen)
{
	char num[32];
	xmlParserCtxtPtr pc;
	xmlDocPtr doc = NULL;
	xmlXPathContextPtr x = NULL;
	xmlNodePtr root;
	xmlXPathObjectPtr set;
	int n, rc = -1;

	memset(out, 0, sizeof(*out));
	if (len > (size_t)INT32_MAX) {
		snprintf(err, errlen, "the report is too large");
		return -1;
	}
	pc = xmlNewParserCtxt();
	if (pc == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	doc = xmlCtxtReadMemory(pc, xml, (int)len, NULL, NULL,
	                        XML_PARSE_NONET | XML_PARSE_NOERROR |
	                                XML_PARSE_NOWARNING);
	if (doc == NULL) {
		const xmlError *e = xmlCtxtGetLastError(pc);
		size_t k;

		snprintf(err, errlen, "the report is not XML (line %d: %s",
		         e ? e->line : 0,
		         e && e->message ? e->message : "unreadable");
		k = strlen(err);
		while (k > 0 && err[k - 1] == '\n') /* libxml2 ends with one */
			err[--k] = '\0';
		if (k + 1 < errlen)
			strcat(err, ")");
		goto out;
	}
	/* a CDA has no DTD; one could only serve to expand entities */
	if (doc->intSubset != NULL || doc->extSubset != NULL) {
		snprintf(err, errlen,
		         "the report declares a DTD (not accepted in a CDA)");
		goto out;
	}
	root = xmlDocGetRootElement(doc);
	if (root == NULL || root->ns == NULL ||
	    strcmp((const char *)root->name, "ClinicalDocument") != 0 ||
	    strcmp((const char *)root->ns->href, NS_HL7) != 0) {
		snprintf(err, errlen,
		         "the report is not a CDA document (no "
		         "ClinicalDocument in urn:hl7-org:v3)");
		goto out;
	}
	x = xmlXPathNewContext(doc);
	if (x == NULL ||
	    xmlXPathRegisterNs(x, (const xmlChar *)"h",
	                       (const xmlChar *)NS_HL7) != 0 ||
	    xmlXPathRegisterNs(x, (const xmlChar *)"ps3-20",
	                       (const xmlChar *)NS_PS320) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	xp_str(x, root, "h:id/@root", out->doc_id, sizeof(out->doc_id));
	xp_str(x, root, "h:id/@extension", out->doc_ext, sizeof(out->doc_ext));
	xp_str(x, root, "h:setId/@root", out->set_id, sizeof(out->set_id));
	xp_str(x, root, "h:setId/@extension", out->set_ext,
	       sizeof(out->set_ext));
	xp_str(x, root, "h:versionNumber/@value", num, sizeof(num));
	out->version = strtol(num, NULL, 10);
	read_code(x, root, "h:code", &out->type);
	xp_str(x, root, "h:title", out->title, sizeof(out->title));
	xp_str(x, root, "h:effectiveTime/@value", out->effective_time,
	       sizeof(out->effective_time));
	read_code(x, root, "h:confidentialityCode", &out->confidentiality);
	set = xp_nodes(x, root, "h:recordTarget/h:patientRole/h:id", &n);
	for (int i = 0; i < n && out->npatient < CDA_MAX_IDS; i++) {
		xmlNodePtr id = set->nodesetval->nodeTab[i];

		/* root and extension of the same id */
		xp_str(x, id, "@extension", out->patient[out->npatient].ext,
		       sizeof(out->patient[0].ext));
		xp_str(x, id, "@root", out->patient[out->npatient].root,
		       sizeof(out->patient[0].root));
		out->npatient++;
	}
	xmlXPathFreeObject(set);
	read_person(x, root, "h:author/h:assignedAuthor", &out->author);
	read_person(x, root, "h:legalAuthenticator/h:assignedEntity",
	            &out->legal);
	xp_str(x, root,
	       "h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id/"
	       "@root",
	       out->replaces, sizeof(out->replaces));
	xp_str(x, root,
	       "h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id/"
	       "@extension",
	       out->replaces_ext, sizeof(out->replaces_ext));
	set = xp_nodes(x, root, "h:documentationOf/h:serviceEvent", &n);
	for (int i = 0; i < n && out->nevents < CDA_MAX_EVENTS; i++)
		read_event(x, set->nodesetval->nodeTab[i],
		           &out->event[out->nevents++]);
	xmlXPathFreeObject(set);
	set = xp_nodes(x, root, "h:inFulfillmentOf/h:order", &n);
	for (int i = 0; i < n && out->norders < CDA_MAX_ORDERS; i++)
		read_order(x, set->nodesetval->nodeTab[i],
		           &out->order[out->norders++]);
	xmlXPathFreeObject(set);
	if (out->doc_id[0] == '\0') {
		snprintf(err, errlen, "the CDA has no ClinicalDocument/id");
		goto out;
	}
	rc = 0;
out:
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(pc);
	return rc;
}
