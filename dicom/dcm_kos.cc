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
