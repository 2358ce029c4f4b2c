/*
 * dcm_qr.cc - the query/retrieve side of the SCP: C-FIND, C-MOVE and C-GET
 * (Study Root and Patient Root) answered by the caller's dcm_qr_handler.
 * Each request is worked out at the provider's first callback: the
 * answers of a C-FIND are gathered, then handed out one per pending
 * response; a C-MOVE or C-GET sends every instance and answers once, with
 * its counts.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmnet/diutil.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace dcmi
{

namespace
{

const char *const kQrFind[] = {
	UID_FINDStudyRootQueryRetrieveInformationModel,
	UID_FINDPatientRootQueryRetrieveInformationModel,
};
const char *const kQrMove[] = {
	UID_MOVEStudyRootQueryRetrieveInformationModel,
	UID_MOVEPatientRootQueryRetrieveInformationModel,
};
const char *const kQrGet[] = {
	UID_GETStudyRootQueryRetrieveInformationModel,
	UID_GETPatientRootQueryRetrieveInformationModel,
};

bool one_of(const char *uid, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(uid, list[i]) == 0)
			return true;
	return false;
}

#define ONE_OF(uid, list) one_of(uid, list, sizeof(list) / sizeof(list[0]))

/* A borrowed identifier, as the handler sees datasets. */
struct Borrowed {
	dcm_ds w;
	explicit Borrowed(DcmDataset *ds)
	{
		w.ds = ds;
	}
};

struct FindCtx {
	const dcm_qr_handler *h;
	const char *calling;
	std::vector<std::unique_ptr<DcmDataset>> answers;
	size_t next = 0;
	DcmDataset *current = nullptr;
};

void emit_answer(void *ectx, const struct dcm_ds *answer)
{
	auto *f = static_cast<FindCtx *>(ectx);
	if (answer && answer->ds)
		f->answers.emplace_back(new DcmDataset(*answer->ds));
}

void find_cb(void *data, OFBool cancelled, T_DIMSE_C_FindRQ *, DcmDataset *ids,
             int count, T_DIMSE_C_FindRSP *rsp, DcmDataset **answer,
             DcmDataset **)
{
	auto *f = static_cast<FindCtx *>(data);
	*answer = nullptr;
	if (count == 1) {
		Borrowed q(ids);
		struct dcm_err err = { "" };
		if (f->h->find(f->h->ctx, f->calling, &q.w, emit_answer, f,
		               &err) != 0) {
			DCMNET_WARN("C-FIND refused: " << err.msg);
			rsp->DimseStatus = STATUS_FIND_Failed_UnableToProcess;
			return;
		}
	}
	if (cancelled) {
		rsp->DimseStatus =
		        STATUS_FIND_Cancel_MatchingTerminatedDueToCancelRequest;
		return;
	}
	if (f->next < f->answers.size()) {
		/* the provider deletes it once sent */
		*answer = f->answers[f->next++].release();
		rsp->DimseStatus = STATUS_Pending;
	} else {
		rsp->DimseStatus = STATUS_Success;
	}
}

/* The files of a C-MOVE or C-GET, freed with it. */
struct Selection {
	char **paths = nullptr;
	size_t n = 0;
	~Selection()
	{
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
	}
};

struct Counts {
	Uint16 completed = 0, failed = 0, warning = 0;
};

struct MoveCtx {
	const dcm_qr_handler *h;
	const char *calling, *our_aet;
	int timeout_s;
};

/* Sends the selection over as; the counts of the sub-operations. */
Counts send_all(const Selection &sel, T_ASC_Association *as, int timeout_s)
{
	Counts c;
	for (size_t i = 0; i < sel.n; i++) {
		unsigned status = 0xFFFF;
		struct dcm_err err = { "" };
		if (store_on(as, timeout_s, sel.paths[i], &status, &err) !=
		    DCM_OK) {
			DCMNET_WARN("sub-operation " << sel.paths[i] << ": "
			                             << err.msg);
			c.failed++;
		} else if (status != STATUS_Success) {
			c.warning++;
		} else {
			c.completed++;
		}
	}
	return c;
}

/* (the O_GET_ flags have the O_MOVE_ values) */
template <typename Rsp> void set_counts(Rsp *rsp, const Counts &c)
{
	rsp->NumberOfRemainingSubOperations = 0;
	rsp->NumberOfCompletedSubOperations = c.completed;
	rsp->NumberOfFailedSubOperations = c.failed;
	rsp->NumberOfWarningSubOperations = c.warning;
	rsp->opts = O_MOVE_NUMBEROFREMAININGSUBOPERATIONS |
	            O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS |
	            O_MOVE_NUMBEROFFAILEDSUBOPERATIONS |
	            O_MOVE_NUMBEROFWARNINGSUBOPERATIONS;
	rsp->DimseStatus =
	        c.failed || c.warning
	                ? STATUS_MOVE_Warning_SubOperationsCompleteOneOrMoreFailures
	                : STATUS_Success;
}

/* The selection of a request; false (status set) when there is none. */
bool selection_of(const dcm_qr_handler *h, const char *calling, DcmDataset *ids,
                  Selection &sel, DIC_US *status)
{
	Borrowed q(ids);
	struct dcm_err err = { "" };
	if (h->select(h->ctx, calling, &q.w, &sel.paths, &sel.n, &err) != 0) {
		DCMNET_WARN("retrieve refused: " << err.msg);
		*status = STATUS_MOVE_Failed_UnableToProcess;
		return false;
	}
	return true;
}

/* Opens an association to the C-MOVE destination for the files' classes. */
T_ASC_Association *open_destination(const MoveCtx *m, const char *dest,
                                    const Selection &sel, T_ASC_Network **net,
                                    bool *known)
{
	char host[256];
	int port = 0;
	*known = m->h->destination(m->h->ctx, m->calling, dest, host,
	                           sizeof(host), &port) == 0;
	if (!*known) {
		DCMNET_WARN("C-MOVE destination " << dest << " is unknown");
		return nullptr;
	}
	if (ASC_initializeNetwork(NET_REQUESTOR, 0, m->timeout_s, net).bad())
		return nullptr;
	T_ASC_Parameters *params = nullptr;
	if (ASC_createAssociationParameters(&params, kMaxPdu).bad()) {
		ASC_dropNetwork(net);
		return nullptr;
	}
	char peer[300];
	snprintf(peer, sizeof(peer), "%s:%d", host, port);
	ASC_setAPTitles(params, m->our_aet, dest, nullptr);
	ASC_setPresentationAddresses(params, "localhost", peer);
	/* one context per SOP class and transfer syntax the files have */
	std::vector<std::pair<std::string, std::string>> seen;
	int id = 1;
	for (size_t i = 0; i < sel.n && id < 255; i++) {
		DcmFileFormat ff;
		if (ff.loadFile(sel.paths[i], EXS_Unknown, EGL_noChange, 256)
		            .bad())
			continue;
		OFString cls;
		ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, cls);
		std::string ts =
		        DcmXfer(ff.getDataset()->getOriginalXfer()).getXferID();
		if (cls.empty() ||
		    std::find(seen.begin(), seen.end(),
		              std::make_pair(std::string(cls.c_str()), ts)) !=
		            seen.end())
			continue;
		seen.emplace_back(cls.c_str(), ts);
		/* the file's own syntax, then the native ones */
		const char *syntaxes[3] = { ts.c_str() };
		int nts = 1;
		for (const char *n : { UID_LittleEndianExplicitTransferSyntax,
		                       UID_LittleEndianImplicitTransferSyntax })
			if (ts != n)
				syntaxes[nts++] = n;
		ASC_addPresentationContext(params,
		                           (T_ASC_PresentationContextID)id,
		                           cls.c_str(), syntaxes, nts);
		id += 2;
	}
	T_ASC_Association *as = nullptr;
	if (ASC_requestAssociation(*net, params, &as).bad() ||
	    ASC_countAcceptedPresentationContexts(params) == 0) {
		DCMNET_WARN("C-MOVE destination " << dest << " at " << peer
		                                  << " refused or unreachable");
		if (as) {
			ASC_abortAssociation(as);
			ASC_destroyAssociation(&as);
		} else {
			ASC_destroyAssociationParameters(&params);
		}
		ASC_dropNetwork(net);
		return nullptr;
	}
	return as;
}

void move_cb(void *data, OFBool, T_DIMSE_C_MoveRQ *req, DcmDataset *ids, int,
             T_DIMSE_C_MoveRSP *rsp, DcmDataset **, DcmDataset **)
{
	auto *m = static_cast<MoveCtx *>(data);
	Selection sel;
	if (!selection_of(m->h, m->calling, ids, sel, &rsp->DimseStatus))
		return;
	if (sel.n == 0) {
		rsp->DimseStatus = STATUS_Success;
		return;
	}
	T_ASC_Network *net = nullptr;
	bool known = false;
	T_ASC_Association *as =
	        open_destination(m, req->MoveDestination, sel, &net, &known);
	if (as == nullptr) { /* unknown, or not answering: nothing sent */
		Counts none;
		none.failed = (Uint16)(sel.n > 0xFFFF ? 0xFFFF : sel.n);
		set_counts(rsp, none);
		rsp->DimseStatus =
		        known ? STATUS_MOVE_Failed_UnableToProcess
		              : STATUS_MOVE_Refused_MoveDestinationUnknown;
		return;
	}
	set_counts(rsp, send_all(sel, as, m->timeout_s));
	if (ASC_releaseAssociation(as).bad())
		ASC_abortAssociation(as);
	ASC_destroyAssociation(&as);
	ASC_dropNetwork(&net);
}

struct GetCtx {
	const dcm_qr_handler *h;
	const char *calling;
	T_ASC_Association *assoc;
	int timeout_s;
};

void get_cb(void *data, OFBool, T_DIMSE_C_GetRQ *, DcmDataset *ids, int,
            T_DIMSE_C_GetRSP *rsp, DcmDataset **, DcmDataset **)
{
	auto *g = static_cast<GetCtx *>(data);
	Selection sel;
	if (!selection_of(g->h, g->calling, ids, sel, &rsp->DimseStatus))
		return;
	set_counts(rsp, send_all(sel, g->assoc, g->timeout_s));
}

} // namespace

bool qr_syntax(const char *abstract)
{
	return ONE_OF(abstract, kQrFind) || ONE_OF(abstract, kQrMove) ||
	       ONE_OF(abstract, kQrGet);
}

OFCondition qr_serve(T_ASC_Association *assoc, T_ASC_PresentationContextID pcid,
                     T_DIMSE_Message *msg, const struct dcm_qr_handler *h,
                     const char *calling, const char *our_aet, int timeout_s)
{
	switch (msg->CommandField) {
	case DIMSE_C_FIND_RQ: {
		FindCtx f;
		f.h = h;
		f.calling = calling;
		return DIMSE_findProvider(assoc, pcid, &msg->msg.CFindRQ,
		                          find_cb, &f, block_mode(timeout_s),
		                          timeout_s);
	}
	case DIMSE_C_MOVE_RQ: {
		MoveCtx m = { h, calling, our_aet, timeout_s };
		return DIMSE_moveProvider(assoc, pcid, &msg->msg.CMoveRQ,
		                          move_cb, &m, block_mode(timeout_s),
		                          timeout_s);
	}
	case DIMSE_C_GET_RQ: {
		GetCtx g = { h, calling, assoc, timeout_s };
		return DIMSE_getProvider(assoc, pcid, &msg->msg.CGetRQ, get_cb,
		                         &g, block_mode(timeout_s), timeout_s);
	}
	default:
		return DIMSE_BADCOMMANDTYPE;
	}
}

} // namespace dcmi
