/*
 * dcm_kos.cc - the KOS manifest drimbox publishes: built as a DCMTK
 * structured report (DSRDocument), then completed on the dataset with what
 * DCMTK 3.6.7 has no setter for (RetrieveURL per series, the requests, the
 * patient's issuer qualifiers and other ids).
 */
#include "dcmtk/config/osconfig.h"

#include "dcm.h"
#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"

#include <cstdlib>
#include <memory>

using dcmi::fail;

namespace
{

const char *opt(const char *s)
{
	return s ? s : "";
}

/* An item of (0040,0032) UniversalEntityID + (0040,0033) type ISO. */
OFCondition put_issuer(DcmItem &parent, const DcmTagKey &seq, const char *oid)
{
	DcmItem *item = nullptr;
	OFCondition c = parent.findOrCreateSequenceItem(seq, item, -2);

	if (c.good())
		c = item->putAndInsertString(DCM_UniversalEntityID, oid);
	if (c.good())
		c = item->putAndInsertString(DCM_UniversalEntityIDType, "ISO");
	return c;
}

/* IssuerOfPatientID + qualifiers on item (the dataset, or an other id). */
OFCondition put_patient_id(DcmItem &item, const struct dcm_kos *k)
{
	OFCondition c = item.putAndInsertString(DCM_PatientID, k->patient_id);

	if (c.good())
		c = item.putAndInsertString(DCM_IssuerOfPatientID,
		                            opt(k->patient_issuer));
	if (c.good() && k->patient_issuer_oid)
		c = put_issuer(item, DCM_IssuerOfPatientIDQualifiersSequence,
		               k->patient_issuer_oid);
	return c;
}

OFCondition put_requests(DcmDataset &ds, const struct dcm_kos *k)
{
	OFCondition c = EC_Normal;

	ds.findAndDeleteElement(DCM_ReferencedRequestSequence);
	for (size_t i = 0; c.good() && i < k->nreq; i++) {
		const struct dcm_kos_request *r = &k->req[i];
		DcmItem *item = nullptr;

		c = ds.findOrCreateSequenceItem(DCM_ReferencedRequestSequence,
		                                item, -2);
		if (c.good())
			c = item->putAndInsertString(DCM_StudyInstanceUID,
			                             k->study_uid);
		if (c.good())
			c = item->insertEmptyElement(
			        DCM_ReferencedStudySequence);
		if (c.good())
			c = item->putAndInsertString(DCM_AccessionNumber,
			                             opt(r->accession));
		if (c.good() && r->accession_oid && r->accession_oid[0])
			c = put_issuer(*item,
			               DCM_IssuerOfAccessionNumberSequence,
			               r->accession_oid);
		if (c.good())
			c = item->putAndInsertString(
			        DCM_PlacerOrderNumberImagingServiceRequest,
			        opt(r->placer_order));
		if (c.good() && r->placer_oid && r->placer_oid[0])
			c = put_issuer(*item, DCM_OrderPlacerIdentifierSequence,
			               r->placer_oid);
		if (c.good())
			c = item->putAndInsertString(
			        DCM_FillerOrderNumberImagingServiceRequest, "");
		if (c.good())
			c = item->putAndInsertString(DCM_RequestedProcedureID,
			                             "");
		if (c.good())
			c = item->putAndInsertString(
			        DCM_RequestedProcedureDescription, "");
		if (c.good())
			c = item->insertEmptyElement(
			        DCM_RequestedProcedureCodeSequence);
	}
	return c;
}

/* RetrieveURL in each series item of the evidence sequence. */
OFCondition put_retrieve_urls(DcmDataset &ds, const struct dcm_kos *k)
{
	DcmItem *study = nullptr;

	for (long s = 0;
	     ds.findAndGetSequenceItem(
	               DCM_CurrentRequestedProcedureEvidenceSequence, study,
	               (int)s)
	             .good();
	     s++) {
		DcmItem *series = nullptr;

		for (long i = 0;
		     study->findAndGetSequenceItem(DCM_ReferencedSeriesSequence,
		                                   series, (int)i)
		             .good();
		     i++) {
			OFString uid;

			series->findAndGetOFString(DCM_SeriesInstanceUID, uid);
			for (size_t n = 0; n < k->nseries; n++)
				if (uid == k->series[n].uid &&
				    k->series[n].retrieve_url) {
					OFCondition c =
					        series->putAndInsertString(
					                DCM_RetrieveURL,
					                k->series[n]
					                        .retrieve_url);

					if (c.bad())
						return c;
				}
		}
	}
	return EC_Normal;
}

int build(const struct dcm_kos *k, const char *path, char *sop_out,
          struct dcm_err *err)
{
	DSRDocument doc(DSRTypes::DT_KeyObjectSelectionDocument);
	DSRDocumentTree &tree = doc.getTree();
	DcmFileFormat ff;
	DcmDataset *ds = ff.getDataset();
	char uid[65];
	OFCondition c;

	doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
	if (doc.createNewSeriesInStudy(k->study_uid).bad())
		return fail(err, DCM_ERR_ARG, "invalid study UID '%s'",
		            k->study_uid);
	doc.setPatientName(opt(k->patient_name));
	doc.setPatientBirthDate(opt(k->birth_date));
	doc.setPatientSex(opt(k->sex));
	doc.setPatientID(k->patient_id);
	doc.setIssuerOfPatientID(opt(k->patient_issuer));
	doc.setStudyDate(opt(k->study_date));
	doc.setStudyTime(opt(k->study_time));
	doc.setStudyID(opt(k->study_id));
	doc.setStudyDescription(opt(k->study_description));
	doc.setReferringPhysicianName(opt(k->referring));
	doc.setAccessionNumber(opt(k->accession));
	doc.setManufacturer(opt(k->manufacturer));
	snprintf(uid, sizeof(uid), "%ld", k->series_number);
	doc.setSeriesNumber(uid);
	snprintf(uid, sizeof(uid), "%ld", k->instance_number);
	doc.setInstanceNumber(uid);
	if (tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) ==
	            0 ||
	    tree.getCurrentContentItem()
	            .setConceptName(
	                    DSRCodedEntryValue("113030", "DCM", "Manifest"))
	            .bad() ||
	    tree.setTemplateIdentification("2010", "DCMR").bad())
		return fail(err, DCM_ERR_INTERNAL,
		            "KOS: cannot build the root");
	DSRTypes::E_AddMode mode = DSRTypes::AM_belowCurrent;
	if (k->description && k->description[0]) {
		if (tree.addContentItem(DSRTypes::RT_contains,
		                        DSRTypes::VT_Text, mode) == 0 ||
		    tree.getCurrentContentItem()
		            .setConceptName(DSRCodedEntryValue(
		                    "113012", "DCM", "Key Object Description"))
		            .bad() ||
		    tree.getCurrentContentItem()
		            .setStringValue(k->description)
		            .bad())
			return fail(err, DCM_ERR_ARG,
			            "KOS: invalid description");
		mode = DSRTypes::AM_afterCurrent;
	}
	for (size_t s = 0; s < k->nseries; s++)
		for (size_t i = 0; i < k->series[s].ninst; i++) {
			const struct dcm_kos_instance *in =
			        &k->series[s].inst[i];

			if (tree.addContentItem(DSRTypes::RT_contains,
			                        DSRTypes::VT_Image,
			                        mode) == 0 ||
			    tree.getCurrentContentItem()
			            .setImageReference(DSRImageReferenceValue(
			                    in->sop_class, in->sop_uid))
			            .bad() ||
			    doc.getCurrentRequestedProcedureEvidence()
			            .addItem(k->study_uid, k->series[s].uid,
			                     in->sop_class, in->sop_uid)
			            .bad())
				return fail(err, DCM_ERR_ARG,
				            "KOS: invalid reference %s / %s",
				            opt(in->sop_class),
				            opt(in->sop_uid));
			mode = DSRTypes::AM_afterCurrent;
		}
	if (doc.getCurrentRequestedProcedureEvidence().isEmpty())
		return fail(err, DCM_ERR_ARG, "KOS: no instance to reference");
	c = doc.write(*ds);
	if (c.bad())
		return fail(err, DCM_ERR_INTERNAL, "KOS: %s", c.text());
	/* what DSRDocument has no setter for */
	if (k->sop_uid)
		ds->putAndInsertString(DCM_SOPInstanceUID, k->sop_uid);
	if (k->series_uid)
		ds->putAndInsertString(DCM_SeriesInstanceUID, k->series_uid);
	if (k->institution)
		ds->putAndInsertString(DCM_InstitutionName, k->institution);
	DcmItem *other = nullptr;
	c = k->patient_issuer_oid
	            ? put_issuer(*ds, DCM_IssuerOfPatientIDQualifiersSequence,
	                         k->patient_issuer_oid)
	            : EC_Normal;
	if (c.good())
		c = ds->findOrCreateSequenceItem(DCM_OtherPatientIDsSequence,
		                                 other, -2);
	if (c.good())
		c = put_patient_id(*other, k);
	if (c.good())
		c = other->putAndInsertString(DCM_TypeOfPatientID, "TEXT");
	if (c.good())
		c = put_requests(*ds, k);
	if (c.good())
		c = put_retrieve_urls(*ds, k);
	if (c.bad())
		return fail(err, DCM_ERR_INTERNAL, "KOS: %s", c.text());
	OFString sop;
	ds->findAndGetOFString(DCM_SOPInstanceUID, sop);
	dcmi::copy_str(sop_out, 65, sop.c_str());
	c = ff.saveFile(path, EXS_LittleEndianExplicit);
	if (c.bad())
		return fail(err, DCM_ERR_IO, "%s: %s", path, c.text());
	return DCM_OK;
}

} // namespace

extern "C" int dcm_kos_write(const struct dcm_kos *k, const char *path,
                             char *sop_out, struct dcm_err *err)
{
	if (!k || !path || !sop_out || !k->study_uid || !k->patient_id)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		return build(k, path, sop_out, err);
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception building a KOS");
	}
}

/* ---- reading a manifest ------------------------------------------------ */

namespace
{

const size_t SERIES_MAX = 10000, INSTANCES_MAX = 1000000;

void get(DcmItem &item, const DcmTagKey &tag, char *out, size_t cap)
{
	OFString v;

	out[0] = '\0';
	if (item.findAndGetOFStringArray(tag, v).good())
		dcmi::copy_str(out, cap, v.c_str());
}

struct manifest_del {
	void operator()(dcm_manifest *m) const
	{
		dcm_manifest_free(m);
	}
};

int read_series(DcmItem &study, const char *study_uid, dcm_manifest *m,
                size_t *total, struct dcm_err *err)
{
	DcmSequenceOfItems *seq = nullptr;

	if (study.findAndGetSequence(DCM_ReferencedSeriesSequence, seq).bad() ||
	    seq == nullptr)
		return DCM_OK;
	for (unsigned long i = 0; i < seq->card(); i++) {
		DcmItem *se = seq->getItem(i);
		DcmSequenceOfItems *sops = nullptr;

		if (m->nseries == SERIES_MAX)
			return fail(err, DCM_ERR_PARSE, "KOS: over %zu series",
			            SERIES_MAX);
		auto *grown = static_cast<dcm_manifest_series *>(realloc(
		        m->series, (m->nseries + 1) * sizeof(*m->series)));
		if (grown == nullptr)
			throw std::bad_alloc();
		m->series = grown;
		dcm_manifest_series *out = &m->series[m->nseries++];
		memset(out, 0, sizeof(*out));
		dcmi::copy_str(out->study_uid, sizeof(out->study_uid),
		               study_uid);
		get(*se, DCM_SeriesInstanceUID, out->uid, sizeof(out->uid));
		get(*se, DCM_RetrieveURL, out->retrieve_url,
		    sizeof(out->retrieve_url));
		get(*se, DCM_RetrieveAETitle, out->retrieve_aet,
		    sizeof(out->retrieve_aet));
		if (out->uid[0] == '\0')
			return fail(err, DCM_ERR_PARSE,
			            "KOS: a series without its UID");
		if (se->findAndGetSequence(DCM_ReferencedSOPSequence, sops)
		            .bad() ||
		    sops == nullptr || sops->card() == 0)
			return fail(err, DCM_ERR_PARSE,
			            "KOS: series %s references no instance",
			            out->uid);
		if (*total + sops->card() > INSTANCES_MAX)
			return fail(err, DCM_ERR_PARSE,
			            "KOS: over %zu instances", INSTANCES_MAX);
		out->inst = static_cast<dcm_manifest_instance *>(
		        calloc(sops->card(), sizeof(*out->inst)));
		if (out->inst == nullptr)
			throw std::bad_alloc();
		for (unsigned long k = 0; k < sops->card(); k++) {
			dcm_manifest_instance *in = &out->inst[out->ninst];

			get(*sops->getItem(k), DCM_ReferencedSOPClassUID,
			    in->sop_class, sizeof(in->sop_class));
			get(*sops->getItem(k), DCM_ReferencedSOPInstanceUID,
			    in->sop_uid, sizeof(in->sop_uid));
			if (in->sop_uid[0] == '\0')
				return fail(err, DCM_ERR_PARSE,
				            "KOS: an instance without its UID "
				            "in series %s",
				            out->uid);
			out->ninst++;
		}
		*total += out->ninst;
	}
	return DCM_OK;
}

int read_manifest(DcmDataset &ds, dcm_manifest *m, struct dcm_err *err)
{
	char cls[65];
	DcmSequenceOfItems *ev = nullptr;
	DcmItem *item = nullptr;
	size_t total = 0;

	get(ds, DCM_SOPClassUID, cls, sizeof(cls));
	if (strcmp(cls, UID_KeyObjectSelectionDocumentStorage) != 0)
		return fail(err, DCM_ERR_PARSE,
		            "not a Key Object Selection document (%s)", cls);
	get(ds, DCM_SOPInstanceUID, m->sop_uid, sizeof(m->sop_uid));
	get(ds, DCM_PatientID, m->patient_id, sizeof(m->patient_id));
	get(ds, DCM_IssuerOfPatientID, m->patient_issuer,
	    sizeof(m->patient_issuer));
	if (ds.findAndGetSequenceItem(DCM_IssuerOfPatientIDQualifiersSequence,
	                              item)
	            .good() &&
	    item != nullptr)
		get(*item, DCM_UniversalEntityID, m->patient_issuer_oid,
		    sizeof(m->patient_issuer_oid));
	get(ds, DCM_PatientName, m->patient_name, sizeof(m->patient_name));
	get(ds, DCM_StudyInstanceUID, m->study_uid, sizeof(m->study_uid));
	get(ds, DCM_AccessionNumber, m->accession, sizeof(m->accession));
	get(ds, DCM_StudyDate, m->study_date, sizeof(m->study_date));
	get(ds, DCM_StudyDescription, m->description, sizeof(m->description));
	if (ds.findAndGetSequence(DCM_CurrentRequestedProcedureEvidenceSequence,
	                          ev)
	            .bad() ||
	    ev == nullptr)
		return fail(err, DCM_ERR_PARSE,
		            "KOS: no Current Requested Procedure Evidence");
	for (unsigned long i = 0; i < ev->card(); i++) {
		char study[65];

		get(*ev->getItem(i), DCM_StudyInstanceUID, study,
		    sizeof(study));
		if (study[0] == '\0')
			return fail(err, DCM_ERR_PARSE,
			            "KOS: evidence without a study UID");
		int rc = read_series(*ev->getItem(i), study, m, &total, err);
		if (rc != DCM_OK)
			return rc;
	}
	if (total == 0)
		return fail(err, DCM_ERR_PARSE, "KOS: references no instance");
	return DCM_OK;
}

} // namespace

extern "C" int dcm_kos_read(const void *buf, size_t len,
                            struct dcm_manifest **out, struct dcm_err *err)
{
	struct dcm_ds *raw = nullptr;

	if (!out)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	*out = nullptr;
	int rc = dcm_ds_read_mem(buf, len, &raw, err);
	if (rc != DCM_OK)
		return rc;
	std::unique_ptr<dcm_ds> ds(raw);
	try {
		std::unique_ptr<dcm_manifest, manifest_del> m(
		        static_cast<dcm_manifest *>(
		                calloc(1, sizeof(dcm_manifest))));
		if (!m)
			return fail(err, DCM_ERR_NOMEM, "out of memory");
		rc = read_manifest(*ds->ds, m.get(), err);
		if (rc == DCM_OK)
			*out = m.release();
		return rc;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception reading a KOS");
	}
}

extern "C" void dcm_manifest_free(struct dcm_manifest *m)
{
	if (m == nullptr)
		return;
	for (size_t i = 0; i < m->nseries; i++)
		free(m->series[i].inst);
	free(m->series);
	free(m);
}
