/*
 * dcm_net.cc - SCU side: association set-up (presentation contexts for
 * echo, Study Root FIND/MOVE/GET and storage), C-ECHO, C-FIND, C-MOVE,
 * C-GET (sub-operations received through dcmi::receive_store) and C-STORE
 * with transcoding when the peer did not accept the file's syntax.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dul.h"

#include <cstring>
#include <vector>

namespace
{

const char *const kNative[] = {
	UID_LittleEndianExplicitTransferSyntax,
	UID_LittleEndianImplicitTransferSyntax,
};
/*
 * An acceptor picks one transfer syntax per presentation context, and a
 * sender whose syntax was not accepted transcodes (Orthanc's C-GET does).
 * So, for the common image classes, each compressed syntax gets a context
 * of its own; rarer classes get one context with all of them.
 */
const char *const kCompressed[] = {
	UID_JPEGLSLosslessTransferSyntax,
	UID_JPEGProcess14SV1TransferSyntax,
	UID_JPEGProcess1TransferSyntax,
	UID_JPEG2000LosslessOnlyTransferSyntax,
	UID_RLELosslessTransferSyntax,
	UID_JPEG2000TransferSyntax,
	UID_JPEGProcess2_4TransferSyntax,
	UID_JPEGLSLossyTransferSyntax,
	UID_JPEGProcess14TransferSyntax,
};

/*
 * For these, each native syntax and the first kSeparate compressed ones get
 * a context each (9 classes x 8 contexts, within the 128 allowed).
 */
const int kSeparate = 5;
const char *const kCommonClasses[] = {
	UID_CTImageStorage,
	UID_MRImageStorage,
	UID_ComputedRadiographyImageStorage,
	UID_DigitalXRayImageStorageForPresentation,
	UID_DigitalMammographyXRayImageStorageForPresentation,
	UID_UltrasoundImageStorage,
	UID_UltrasoundMultiframeImageStorage,
	UID_SecondaryCaptureImageStorage,
	UID_XRayAngiographicImageStorage,
};

/* Other image classes: a native and a compressed context each. */
const char *const kImageClasses[] = {
	UID_EnhancedCTImageStorage,
	UID_EnhancedMRImageStorage,
	UID_DigitalXRayImageStorageForProcessing,
	UID_DigitalMammographyXRayImageStorageForProcessing,
	UID_BreastTomosynthesisImageStorage,
	UID_MultiframeSingleBitSecondaryCaptureImageStorage,
	UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage,
	UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
	UID_MultiframeTrueColorSecondaryCaptureImageStorage,
	UID_EnhancedXAImageStorage,
	UID_XRayRadiofluoroscopicImageStorage,
	UID_NuclearMedicineImageStorage,
	UID_PositronEmissionTomographyImageStorage,
	UID_EnhancedPETImageStorage,
	UID_RTImageStorage,
	UID_VLPhotographicImageStorage,
	UID_VLEndoscopicImageStorage,
	UID_OphthalmicPhotography8BitImageStorage,
};

/* Other classes get one native context. */
const char *const kOtherClasses[] = {
	UID_RTDoseStorage,
	UID_RTStructureSetStorage,
	UID_RTPlanStorage,
	UID_KeyObjectSelectionDocumentStorage,
	UID_BasicTextSRStorage,
	UID_EnhancedSRStorage,
	UID_ComprehensiveSRStorage,
	UID_XRayRadiationDoseSRStorage,
	UID_EncapsulatedPDFStorage,
	UID_GrayscaleSoftcopyPresentationStateStorage,
	UID_SegmentationStorage,
};

template <size_t N> int count(const char *const (&)[N])
{
	return (int)N;
}

} // namespace

using dcmi::fail;

struct dcm_assoc {
	T_ASC_Network *net = nullptr;
	T_ASC_Association *assoc = nullptr;
	int timeout_s = 0;
	bool broken = false; /* abort instead of release on close */
	std::string peer_aet;

	DIC_US next_id()
	{
		return assoc->nextMsgID++;
	}
};

namespace
{

/* Adds one context; ids are odd and at most 255 (128 contexts). */
OFCondition add_pc(T_ASC_Parameters *p, int &id, const char *abstract,
                   const char *const *ts, int n, T_ASC_SC_ROLE role)
{
	if (id > 255)
		return ASC_BADPRESENTATIONCONTEXTID;
	OFCondition c = ASC_addPresentationContext(
	        p, (T_ASC_PresentationContextID)id, abstract,
	        const_cast<const char **>(ts), n, role);
	id += 2;
	return c;
}

OFCondition add_contexts(T_ASC_Parameters *p, unsigned services)
{
	int id = 1;
	OFCondition c = EC_Normal;
	if (services & DCM_SVC_ECHO)
		c = add_pc(p, id, UID_VerificationSOPClass, kNative,
		           count(kNative), ASC_SC_ROLE_DEFAULT);
	if (c.good() && (services & DCM_SVC_FIND))
		c = add_pc(p, id,
		           UID_FINDStudyRootQueryRetrieveInformationModel,
		           kNative, count(kNative), ASC_SC_ROLE_DEFAULT);
	if (c.good() && (services & DCM_SVC_MOVE))
		c = add_pc(p, id,
		           UID_MOVEStudyRootQueryRetrieveInformationModel,
		           kNative, count(kNative), ASC_SC_ROLE_DEFAULT);
	if (c.good() && (services & DCM_SVC_GET))
		c = add_pc(p, id, UID_GETStudyRootQueryRetrieveInformationModel,
		           kNative, count(kNative), ASC_SC_ROLE_DEFAULT);
	unsigned st = services & (DCM_SVC_GET | DCM_SVC_STORE);
	if (!st || c.bad())
		return c;
	/* C-GET needs us as storage SCP; plain storage as SCU. */
	T_ASC_SC_ROLE role = st == DCM_SVC_STORE ? ASC_SC_ROLE_DEFAULT
	                     : st == DCM_SVC_GET ? ASC_SC_ROLE_SCP
	                                         : ASC_SC_ROLE_SCUSCP;
	for (const char *cls : kCommonClasses) {
		for (int i = 0; c.good() && i < count(kNative); i++)
			c = add_pc(p, id, cls, &kNative[i], 1, role);
		for (int i = 0; c.good() && i < kSeparate; i++)
			c = add_pc(p, id, cls, &kCompressed[i], 1, role);
		if (c.good())
			c = add_pc(p, id, cls, &kCompressed[kSeparate],
			           count(kCompressed) - kSeparate, role);
		if (c.bad())
			return c;
	}
	for (const char *cls : kImageClasses) {
		c = add_pc(p, id, cls, kNative, count(kNative), role);
		if (c.good())
			c = add_pc(p, id, cls, kCompressed, count(kCompressed),
			           role);
		if (c.bad())
			return c;
	}
	for (const char *cls : kOtherClasses) {
		c = add_pc(p, id, cls, kNative, count(kNative), role);
		if (c.bad())
			return c;
	}
	return c;
}

/* Network-level failure: remember to abort, report. */
int net_fail(dcm_assoc *as, struct dcm_err *err, const char *what,
             const OFCondition &c)
{
	as->broken = true;
	return fail(err, DCM_ERR_NETWORK, "%s: %s", what, c.text());
}

T_ASC_PresentationContextID find_pc(dcm_assoc *as, const char *abstract)
{
	return ASC_findAcceptedPresentationContextID(as->assoc, abstract);
}

/* Builds the Study Root identifier of a retrieval. */
int selection_ids(const struct dcm_selection *sel, DcmDataset &ids,
                  struct dcm_err *err)
{
	if (!sel || !sel->study_uid || !*sel->study_uid)
		return fail(err, DCM_ERR_ARG, "study_uid is required");
	if (sel->sop_uid && *sel->sop_uid &&
	    !(sel->series_uid && *sel->series_uid))
		return fail(err, DCM_ERR_ARG, "sop_uid requires series_uid");
	const char *level = "STUDY";
	ids.putAndInsertString(DCM_StudyInstanceUID, sel->study_uid);
	if (sel->series_uid && *sel->series_uid) {
		level = "SERIES";
		ids.putAndInsertString(DCM_SeriesInstanceUID, sel->series_uid);
		if (sel->sop_uid && *sel->sop_uid) {
			level = "IMAGE";
			ids.putAndInsertString(DCM_SOPInstanceUID,
			                       sel->sop_uid);
		}
	}
	ids.putAndInsertString(DCM_QueryRetrieveLevel, level);
	return DCM_OK;
}

/* Final status of a retrieval from the last response. */
int retrieve_status(unsigned status, bool cancelled,
                    const struct dcm_progress *p, const char *what,
                    struct dcm_err *err)
{
	if (status ==
	            STATUS_MOVE_Cancel_SubOperationsTerminatedDueToCancelIndication ||
	    cancelled)
		return fail(err, DCM_ERR_CANCELLED, "%s cancelled", what);
	if (p->failed > 0)
		return fail(err, DCM_ERR_FAILED,
		            "%s: %d sub-operation(s) failed (status 0x%04x)",
		            what, p->failed, status);
	if (status == STATUS_Success || DICOM_WARNING_STATUS(status))
		return DCM_OK;
	return fail(err, DCM_ERR_FAILED, "%s failed with status 0x%04x", what,
	            status);
}

} // namespace

extern "C" int dcm_assoc_open(const struct dcm_peer *peer, unsigned services,
                              struct dcm_assoc **out, struct dcm_err *err)
{
	if (!peer || !out || !peer->host || !peer->called_aet ||
	    !peer->calling_aet || peer->port <= 0 || peer->port > 65535 ||
	    !services)
		return fail(err, DCM_ERR_ARG, "bad peer or services");
	if (strlen(peer->called_aet) > 16 || strlen(peer->calling_aet) > 16)
		return fail(err, DCM_ERR_ARG, "AE title longer than 16");
	T_ASC_Parameters *params = nullptr;
	std::unique_ptr<dcm_assoc> as;
	try {
		as.reset(new dcm_assoc);
		as->timeout_s = peer->timeout_s;
		as->peer_aet = peer->called_aet;
		int t = peer->timeout_s > 0 ? peer->timeout_s : 30;
		/* DCMTK's connect timeout is a process-wide setting. */
		dcmConnectionTimeout.set(t);
		OFCondition c =
		        ASC_initializeNetwork(NET_REQUESTOR, 0, t, &as->net);
		if (c.bad())
			return fail(err, DCM_ERR_INTERNAL, "%s", c.text());
		c = ASC_createAssociationParameters(&params, dcmi::kMaxPdu);
		if (c.bad()) {
			ASC_dropNetwork(&as->net);
			return fail(err, DCM_ERR_NOMEM, "%s", c.text());
		}
		ASC_setAPTitles(params, peer->calling_aet, peer->called_aet,
		                nullptr);
		char addr[300];
		snprintf(addr, sizeof(addr), "%s:%d", peer->host, peer->port);
		ASC_setPresentationAddresses(params, "localhost", addr);
		c = add_contexts(params, services);
		if (c.bad()) {
			ASC_destroyAssociationParameters(&params);
			ASC_dropNetwork(&as->net);
			return fail(err, DCM_ERR_INTERNAL, "contexts: %s",
			            c.text());
		}
		/* params is owned by the association from here on */
		c = ASC_requestAssociation(as->net, params, &as->assoc);
		if (c.bad()) {
			int st = DCM_ERR_CONNECT;
			OFString why = c.text();
			if (c == DUL_ASSOCIATIONREJECTED) {
				T_ASC_RejectParameters rej;
				ASC_getRejectParameters(params, &rej);
				ASC_printRejectParameters(why, &rej);
				st = DCM_ERR_REJECTED;
			}
			if (as->assoc) {
				ASC_dropAssociation(as->assoc);
				ASC_destroyAssociation(&as->assoc);
			} else {
				ASC_destroyAssociationParameters(&params);
			}
			ASC_dropNetwork(&as->net);
			for (char &ch : why)
				if (ch == '\n' || ch == '\r')
					ch = ' ';
			return fail(err, st, "%s:%d: %s", peer->host,
			            peer->port, why.c_str());
		}
		if (ASC_countAcceptedPresentationContexts(as->assoc->params) ==
		    0) {
			as->broken = true;
			dcm_assoc_close(as.release());
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "peer accepted no presentation context");
		}
		*out = as.release();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL,
		            "exception opening association");
	}
}

extern "C" void dcm_assoc_close(struct dcm_assoc *as)
{
	if (!as)
		return;
	try {
		if (as->assoc) {
			if (as->broken ||
			    ASC_releaseAssociation(as->assoc).bad())
				ASC_abortAssociation(as->assoc);
			ASC_dropAssociation(as->assoc);
			ASC_destroyAssociation(&as->assoc);
		}
		if (as->net)
			ASC_dropNetwork(&as->net);
	} catch (...) {
	}
	delete as;
}

extern "C" int dcm_echo(struct dcm_assoc *as, struct dcm_err *err)
{
	if (!as || !as->assoc)
		return fail(err, DCM_ERR_ARG, "NULL association");
	try {
		if (!find_pc(as, UID_VerificationSOPClass))
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "verification not accepted");
		DIC_US status = 0;
		DcmDataset *detail = nullptr;
		OFCondition c = DIMSE_echoUser(as->assoc, as->next_id(),
		                               dcmi::block_mode(as->timeout_s),
		                               as->timeout_s, &status, &detail);
		delete detail;
		if (c.bad())
			return net_fail(as, err, "C-ECHO", c);
		if (status != STATUS_Success)
			return fail(err, DCM_ERR_FAILED, "C-ECHO status 0x%04x",
			            status);
		return DCM_OK;
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception in C-ECHO");
	}
}

namespace
{

struct FindCtx {
	dcm_assoc *as;
	T_ASC_PresentationContextID pcid;
	dcm_find_cb cb;
	void *ctx;
	bool cancelled;
};

void find_cb(void *data, T_DIMSE_C_FindRQ *rq, int, T_DIMSE_C_FindRSP *,
             DcmDataset *ids)
{
	auto *f = static_cast<FindCtx *>(data);
	if (f->cancelled || !ids)
		return;
	dcm_ds w; /* borrowed: ids stays DCMTK's */
	w.ds = ids;
	if (f->cb && f->cb(f->ctx, &w) != 0) {
		f->cancelled = true;
		DIMSE_sendCancelRequest(f->as->assoc, f->pcid, rq->MessageID);
	}
}

} // namespace

extern "C" int dcm_find(struct dcm_assoc *as, enum dcm_level level,
                        const struct dcm_ds *query, dcm_find_cb cb, void *ctx,
                        struct dcm_err *err)
{
	if (!as || !as->assoc || !query || !query->ds)
		return fail(err, DCM_ERR_ARG, "NULL argument");
	const char *lv = level == DCM_LEVEL_STUDY    ? "STUDY"
	                 : level == DCM_LEVEL_SERIES ? "SERIES"
	                 : level == DCM_LEVEL_IMAGE  ? "IMAGE"
	                                             : nullptr;
	if (!lv)
		return fail(err, DCM_ERR_ARG, "bad level");
	try {
		const char *sop =
		        UID_FINDStudyRootQueryRetrieveInformationModel;
		T_ASC_PresentationContextID pcid = find_pc(as, sop);
		if (!pcid)
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "Study Root FIND not accepted");
		DcmDataset ids(*query->ds);
		ids.putAndInsertString(DCM_QueryRetrieveLevel, lv);
		T_DIMSE_C_FindRQ req;
		memset(&req, 0, sizeof(req));
		req.MessageID = as->next_id();
		OFStandard::strlcpy(req.AffectedSOPClassUID, sop,
		                    sizeof(req.AffectedSOPClassUID));
		req.DataSetType = DIMSE_DATASET_PRESENT;
		req.Priority = DIMSE_PRIORITY_MEDIUM;
		T_DIMSE_C_FindRSP rsp;
		memset(&rsp, 0, sizeof(rsp));
		FindCtx f = { as, pcid, cb, ctx, false };
		int n = 0;
		DcmDataset *detail = nullptr;
		OFCondition c =
		        DIMSE_findUser(as->assoc, pcid, &req, &ids, n, find_cb,
		                       &f, dcmi::block_mode(as->timeout_s),
		                       as->timeout_s, &rsp, &detail);
		delete detail;
		if (c.bad())
			return net_fail(as, err, "C-FIND", c);
		if (f.cancelled || rsp.DimseStatus == STATUS_FIND_Cancel)
			return fail(err, DCM_ERR_CANCELLED, "C-FIND cancelled");
		if (rsp.DimseStatus != STATUS_Success)
			return fail(err, DCM_ERR_FAILED,
			            "C-FIND failed with status 0x%04x",
			            rsp.DimseStatus);
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception in C-FIND");
	}
}

namespace
{

struct MoveCtx {
	dcm_assoc *as;
	T_ASC_PresentationContextID pcid;
	dcm_progress_cb cb;
	void *ctx;
	bool cancelled;
	struct dcm_progress last;
};

void move_cb(void *data, T_DIMSE_C_MoveRQ *rq, int, T_DIMSE_C_MoveRSP *rsp)
{
	auto *m = static_cast<MoveCtx *>(data);
	m->last.remaining = rsp->NumberOfRemainingSubOperations;
	m->last.completed = rsp->NumberOfCompletedSubOperations;
	m->last.failed = rsp->NumberOfFailedSubOperations;
	m->last.warning = rsp->NumberOfWarningSubOperations;
	if (m->cancelled || !m->cb)
		return;
	if (m->cb(m->ctx, &m->last) != 0) {
		m->cancelled = true;
		DIMSE_sendCancelRequest(m->as->assoc, m->pcid, rq->MessageID);
	}
}

} // namespace

extern "C" int dcm_move(struct dcm_assoc *as, const struct dcm_selection *sel,
                        const char *dest_aet, dcm_progress_cb cb, void *ctx,
                        struct dcm_progress *final, struct dcm_err *err)
{
	if (!as || !as->assoc || !dest_aet || !*dest_aet ||
	    strlen(dest_aet) > 16)
		return fail(err, DCM_ERR_ARG, "bad argument");
	try {
		const char *sop =
		        UID_MOVEStudyRootQueryRetrieveInformationModel;
		T_ASC_PresentationContextID pcid = find_pc(as, sop);
		if (!pcid)
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "Study Root MOVE not accepted");
		DcmDataset ids;
		int st = selection_ids(sel, ids, err);
		if (st != DCM_OK)
			return st;
		T_DIMSE_C_MoveRQ req;
		memset(&req, 0, sizeof(req));
		req.MessageID = as->next_id();
		OFStandard::strlcpy(req.AffectedSOPClassUID, sop,
		                    sizeof(req.AffectedSOPClassUID));
		OFStandard::strlcpy(req.MoveDestination, dest_aet,
		                    sizeof(req.MoveDestination));
		req.DataSetType = DIMSE_DATASET_PRESENT;
		req.Priority = DIMSE_PRIORITY_MEDIUM;
		T_DIMSE_C_MoveRSP rsp;
		memset(&rsp, 0, sizeof(rsp));
		MoveCtx m = { as, pcid, cb, ctx, false, { 0, 0, 0, 0 } };
		DcmDataset *detail = nullptr, *rspIds = nullptr;
		OFCondition c = DIMSE_moveUser(
		        as->assoc, pcid, &req, &ids, move_cb, &m,
		        dcmi::block_mode(as->timeout_s), as->timeout_s, nullptr,
		        nullptr, nullptr, &rsp, &detail, &rspIds);
		delete detail;
		delete rspIds;
		if (c.bad())
			return net_fail(as, err, "C-MOVE", c);
		struct dcm_progress p = m.last;
		if (rsp.opts & O_MOVE_NUMBEROFREMAININGSUBOPERATIONS)
			p.remaining = rsp.NumberOfRemainingSubOperations;
		if (rsp.opts & O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS)
			p.completed = rsp.NumberOfCompletedSubOperations;
		if (rsp.opts & O_MOVE_NUMBEROFFAILEDSUBOPERATIONS)
			p.failed = rsp.NumberOfFailedSubOperations;
		if (rsp.opts & O_MOVE_NUMBEROFWARNINGSUBOPERATIONS)
			p.warning = rsp.NumberOfWarningSubOperations;
		if (final)
			*final = p;
		return retrieve_status(rsp.DimseStatus, m.cancelled, &p,
		                       "C-MOVE", err);
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception in C-MOVE");
	}
}

extern "C" int dcm_get(struct dcm_assoc *as, const struct dcm_selection *sel,
                       const struct dcm_store_handler *h, dcm_progress_cb cb,
                       void *ctx, struct dcm_progress *final,
                       struct dcm_err *err)
{
	if (!as || !as->assoc || !h || !h->stored || !h->tmp_dir)
		return fail(err, DCM_ERR_ARG, "bad argument");
	try {
		const char *sop = UID_GETStudyRootQueryRetrieveInformationModel;
		T_ASC_PresentationContextID pcid = find_pc(as, sop);
		if (!pcid)
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "Study Root GET not accepted");
		DcmDataset ids;
		int st = selection_ids(sel, ids, err);
		if (st != DCM_OK)
			return st;
		T_DIMSE_Message req;
		memset(&req, 0, sizeof(req));
		req.CommandField = DIMSE_C_GET_RQ;
		T_DIMSE_C_GetRQ &g = req.msg.CGetRQ;
		g.MessageID = as->next_id();
		OFStandard::strlcpy(g.AffectedSOPClassUID, sop,
		                    sizeof(g.AffectedSOPClassUID));
		g.DataSetType = DIMSE_DATASET_PRESENT;
		g.Priority = DIMSE_PRIORITY_MEDIUM;
		OFCondition c = DIMSE_sendMessageUsingMemoryData(
		        as->assoc, pcid, &req, nullptr, &ids, nullptr, nullptr);
		if (c.bad())
			return net_fail(as, err, "C-GET", c);
		struct dcm_progress p = { 0, 0, 0, 0 };
		bool cancelled = false;
		for (;;) {
			T_DIMSE_Message msg;
			memset(&msg, 0, sizeof(msg));
			T_ASC_PresentationContextID rpc = 0;
			DcmDataset *detail = nullptr;
			c = DIMSE_receiveCommand(
			        as->assoc, dcmi::block_mode(as->timeout_s),
			        as->timeout_s, &rpc, &msg, &detail);
			delete detail;
			if (c.bad())
				return net_fail(as, err, "C-GET", c);
			if (msg.CommandField == DIMSE_C_STORE_RQ) {
				c = dcmi::receive_store(as->assoc, rpc,
				                        &msg.msg.CStoreRQ, h,
				                        as->peer_aet.c_str(),
				                        as->timeout_s, nullptr);
				if (c.bad())
					return net_fail(as, err,
					                "C-GET sub-operation",
					                c);
				continue;
			}
			if (msg.CommandField != DIMSE_C_GET_RSP) {
				as->broken = true;
				return fail(err, DCM_ERR_NETWORK,
				            "unexpected DIMSE command 0x%04x",
				            (unsigned)msg.CommandField);
			}
			T_DIMSE_C_GetRSP &r = msg.msg.CGetRSP;
			if (r.DataSetType != DIMSE_DATASET_NULL) {
				/* failed SOP instance list: not needed */
				DcmDataset *d = nullptr;
				T_ASC_PresentationContextID dpc = 0;
				c = DIMSE_receiveDataSetInMemory(
				        as->assoc,
				        dcmi::block_mode(as->timeout_s),
				        as->timeout_s, &dpc, &d, nullptr,
				        nullptr);
				delete d;
				if (c.bad())
					return net_fail(as, err, "C-GET", c);
			}
			if (r.opts & O_GET_NUMBEROFREMAININGSUBOPERATIONS)
				p.remaining = r.NumberOfRemainingSubOperations;
			if (r.opts & O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS)
				p.completed = r.NumberOfCompletedSubOperations;
			if (r.opts & O_GET_NUMBEROFFAILEDSUBOPERATIONS)
				p.failed = r.NumberOfFailedSubOperations;
			if (r.opts & O_GET_NUMBEROFWARNINGSUBOPERATIONS)
				p.warning = r.NumberOfWarningSubOperations;
			if (DICOM_PENDING_STATUS(r.DimseStatus)) {
				if (!cancelled && cb && cb(ctx, &p) != 0) {
					cancelled = true;
					DIMSE_sendCancelRequest(as->assoc, pcid,
					                        g.MessageID);
				}
				continue;
			}
			if (final)
				*final = p;
			return retrieve_status(r.DimseStatus, cancelled, &p,
			                       "C-GET", err);
		}
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception in C-GET");
	}
}

namespace
{

/* Accepted transfer syntaxes for an abstract syntax, in context order. */
std::vector<std::pair<T_ASC_PresentationContextID, std::string>>
accepted_for(dcm_assoc *as, const char *abstract)
{
	std::vector<std::pair<T_ASC_PresentationContextID, std::string>> v;
	T_ASC_Parameters *p = as->assoc->params;
	int n = ASC_countPresentationContexts(p);
	for (int i = 0; i < n; i++) {
		T_ASC_PresentationContext pc;
		if (ASC_getPresentationContext(p, i, &pc).bad())
			continue;
		if (pc.resultReason == ASC_P_ACCEPTANCE &&
		    strcmp(pc.abstractSyntax, abstract) == 0)
			v.emplace_back(pc.presentationContextID,
			               pc.acceptedTransferSyntax);
	}
	return v;
}

} // namespace

/* An item of OtherPatientIDsSequence, or of the dataset itself: an
 * identifier, its issuer, and the issuer as an ISO universal entity
 * when it is an OID. */
static void put_identifier(DcmItem *item, const char *id, const char *issuer)
{
	item->putAndInsertString(DCM_PatientID, id);
	item->findAndDeleteElement(DCM_IssuerOfPatientIDQualifiersSequence);
	if (issuer == nullptr || issuer[0] == '\0') {
		item->findAndDeleteElement(DCM_IssuerOfPatientID);
		return;
	}
	item->putAndInsertString(DCM_IssuerOfPatientID, issuer);
	if (strspn(issuer, "0123456789.") == strlen(issuer)) {
		DcmItem *q = nullptr;
		if (item->findOrCreateSequenceItem(
		                DCM_IssuerOfPatientIDQualifiersSequence, q, 0)
		            .good()) {
			q->putAndInsertString(DCM_UniversalEntityID, issuer);
			q->putAndInsertString(DCM_UniversalEntityIDType, "ISO");
		}
	}
}

/* Adds an identifier to OtherPatientIDsSequence unless it is there. */
static void keep_identifier(DcmDataset *ds, const char *id, const char *issuer)
{
	DcmSequenceOfItems *seq = nullptr;
	OFString have, by;

	if (id == nullptr || id[0] == '\0')
		return;
	if (ds->findAndGetSequence(DCM_OtherPatientIDsSequence, seq).good() &&
	    seq != nullptr)
		for (unsigned long i = 0; i < seq->card(); i++) {
			seq->getItem(i)->findAndGetOFString(DCM_PatientID,
			                                    have);
			seq->getItem(i)->findAndGetOFString(
			        DCM_IssuerOfPatientID, by);
			if (have == id && (by.empty() || issuer == nullptr ||
			                   issuer[0] == '\0' || by == issuer))
				return; /* the same, or the same less known */
		}
	DcmItem *item = nullptr;
	if (ds->findOrCreateSequenceItem(DCM_OtherPatientIDsSequence, item, -2)
	            .good()) {
		put_identifier(item, id, issuer);
		item->putAndInsertString(DCM_TypeOfPatientID, "TEXT");
	}
}

static void reidentify(DcmDataset *ds, const struct dcm_patient_ids *ids)
{
	OFString old, old_issuer;

	ds->findAndGetOFString(DCM_PatientID, old);
	ds->findAndGetOFString(DCM_IssuerOfPatientID, old_issuer);
	keep_identifier(ds, ids->keep_id, ids->keep_issuer);
	if (!(old == ids->patient_id &&
	      old_issuer == (ids->issuer ? ids->issuer : "")))
		keep_identifier(ds, old.c_str(), old_issuer.c_str());
	put_identifier(ds, ids->patient_id, ids->issuer);
}

int dcmi::store_on(T_ASC_Association *assoc, int timeout_s, const char *path,
                   unsigned *dimse_status, struct dcm_err *err)
{
	struct dcm_assoc as;

	as.assoc = assoc;
	as.timeout_s = timeout_s;
	return dcm_store_file_as(&as, path, nullptr, dimse_status, err);
}

extern "C" int dcm_store_file(struct dcm_assoc *as, const char *path,
                              unsigned *dimse_status, struct dcm_err *err)
{
	return dcm_store_file_as(as, path, nullptr, dimse_status, err);
}

extern "C" int dcm_store_file_as(struct dcm_assoc *as, const char *path,
                                 const struct dcm_patient_ids *ids,
                                 unsigned *dimse_status, struct dcm_err *err)
{
	if (!as || !as->assoc || !path || (ids && !ids->patient_id))
		return fail(err, DCM_ERR_ARG, "NULL argument");
	try {
		DcmFileFormat ff;
		OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange,
		                            DCM_MaxReadLength, ERM_autoDetect);
		if (c.bad())
			return fail(err,
			            access(path, R_OK) ? DCM_ERR_IO
			                               : DCM_ERR_PARSE,
			            "%s: %s", path, c.text());
		DcmDataset *ds = ff.getDataset();
		OFString cls, inst;
		ds->findAndGetOFString(DCM_SOPClassUID, cls);
		ds->findAndGetOFString(DCM_SOPInstanceUID, inst);
		if (cls.empty() || inst.empty())
			return fail(err, DCM_ERR_PARSE,
			            "%s: no SOP class or instance UID", path);
		if (ids != nullptr)
			reidentify(ds, ids);
		E_TransferSyntax x = ds->getOriginalXfer();
		auto acc = accepted_for(as, cls.c_str());
		if (acc.empty())
			return fail(err, DCM_ERR_NO_CONTEXT,
			            "no accepted context for %s", cls.c_str());
		T_ASC_PresentationContextID pcid = 0;
		for (auto &a : acc)
			if (DcmXfer(a.second.c_str()).getXfer() == x)
				pcid = a.first;
		if (!pcid) {
			/* transcode: native first, then whatever was taken */
			ds->loadAllDataIntoMemory();
			std::vector<std::pair<T_ASC_PresentationContextID,
			                      std::string>>
			        order;
			for (auto &a : acc)
				if (DcmXfer(a.second.c_str())
				            .isNotEncapsulated())
					order.push_back(a);
			for (auto &a : acc)
				if (DcmXfer(a.second.c_str()).isEncapsulated())
					order.push_back(a);
			for (auto &a : order) {
				E_TransferSyntax t =
				        DcmXfer(a.second.c_str()).getXfer();
				if (ds->chooseRepresentation(t, nullptr)
				            .good() &&
				    ds->canWriteXfer(t)) {
					pcid = a.first;
					break;
				}
			}
			if (!pcid)
				return fail(err, DCM_ERR_NO_CONTEXT,
				            "cannot transcode %s from %s", path,
				            DcmXfer(x).getXferName());
		}
		T_DIMSE_C_StoreRQ req;
		memset(&req, 0, sizeof(req));
		req.MessageID = as->next_id();
		OFStandard::strlcpy(req.AffectedSOPClassUID, cls.c_str(),
		                    sizeof(req.AffectedSOPClassUID));
		OFStandard::strlcpy(req.AffectedSOPInstanceUID, inst.c_str(),
		                    sizeof(req.AffectedSOPInstanceUID));
		req.DataSetType = DIMSE_DATASET_PRESENT;
		req.Priority = DIMSE_PRIORITY_MEDIUM;
		T_DIMSE_C_StoreRSP rsp;
		memset(&rsp, 0, sizeof(rsp));
		DcmDataset *detail = nullptr;
		c = DIMSE_storeUser(as->assoc, pcid, &req, nullptr, ds, nullptr,
		                    nullptr, dcmi::block_mode(as->timeout_s),
		                    as->timeout_s, &rsp, &detail);
		delete detail;
		if (c.bad())
			return net_fail(as, err, "C-STORE", c);
		if (dimse_status)
			*dimse_status = rsp.DimseStatus;
		if (rsp.DimseStatus != STATUS_Success &&
		    !DICOM_WARNING_STATUS(rsp.DimseStatus))
			return fail(err, DCM_ERR_FAILED,
			            "C-STORE status 0x%04x", rsp.DimseStatus);
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL, "exception in C-STORE");
	}
}
