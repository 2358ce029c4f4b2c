/*
 * cda.h - what drimbox reads from the CDA R2 imaging report the RIS sends
 * (IMG-CR-IMG, CI-SIS): the document's identity, the patient, authors, and
 * for every documentationOf block the studies and their codes; for every
 * inFulfillmentOf block the order and accession numbers. Parsed with
 * libxml2, never with network access or external entities.
 */
#ifndef DRIMBOX_CDA_H
#define DRIMBOX_CDA_H

#include <stddef.h>

#define CDA_MAX_EVENTS 16
#define CDA_MAX_ORDERS 16
#define CDA_MAX_IDS 8 /* study UIDs of one serviceEvent */

struct cda_code {
	char code[64], system[80], display[160];
};

struct cda_person {
	char id[64], id_root[80]; /* RPPS: root 1.2.250.1.71.4.2.1 */
	char family[80], given[80], prefix[16];
	struct cda_code role; /* profession / specialty */
	char org_id[64], org_root[80], org_name[160];
};

struct cda_event { /* documentationOf/serviceEvent */
	char study_uid[CDA_MAX_IDS][65];
	int nstudies;
	struct cda_code code;     /* LOINC */
	struct cda_code ccam;     /* translation, CCAM */
	struct cda_code modality; /* translation, DCM */
	struct cda_code region;   /* translation, SNOMED CT */
	char start[32], end[32];  /* effectiveTime low/high */
	struct cda_person performer;
};

struct cda_order { /* inFulfillmentOf/order */
	char id[64], id_root[80];
	char accession[64], accession_root[80]; /* ps3-20:accessionNumber */
};

struct cda_info {
	char doc_id[80], doc_ext[80]; /* ClinicalDocument/id */
	char set_id[80], set_ext[80];
	long version;
	struct cda_code type; /* ClinicalDocument/code */
	char title[256];
	char effective_time[32];
	struct cda_code confidentiality;
	struct {
		char ext[64], root[80];
	} patient[CDA_MAX_IDS]; /* recordTarget/patientRole/id, in order */
	int npatient;
	struct cda_person author, legal;
	char replaces[80], replaces_ext[80]; /* relatedDocument RPLC */
	struct cda_event event[CDA_MAX_EVENTS];
	int nevents;
	struct cda_order order[CDA_MAX_ORDERS];
	int norders;
};

/* Parses a CDA document; 0, or -1 with err (not XML, not a CDA, ...). */
int cda_parse(const char *xml, size_t len, struct cda_info *out, char *err,
              size_t errlen);

#endif
