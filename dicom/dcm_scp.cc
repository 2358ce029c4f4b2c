/*
 * dcm_scp.cc - the SCP (storage; query/retrieve in dcm_qr.cc): one listening
 * thread (poll on the listen socket and a wake-up pipe) and one thread per
 * association, plus the bit-preserving C-STORE receive path shared with C-GET
 * (receive_store). Instances are streamed to a temp file and only their header
 * is parsed.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dul.h"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace dcmi
{

/* Compressed syntaxes are accepted as proposed (never decompressed). */
static const char *const kCompressed[] = {
	UID_JPEGProcess1TransferSyntax,
	UID_JPEGProcess2_4TransferSyntax,
	UID_JPEGProcess14TransferSyntax,
	UID_JPEGProcess14SV1TransferSyntax,
	UID_JPEGLSLosslessTransferSyntax,
	UID_JPEGLSLossyTransferSyntax,
	UID_JPEG2000LosslessOnlyTransferSyntax,
	UID_JPEG2000TransferSyntax,
	UID_RLELosslessTransferSyntax,
};

/* Then native ones, in this order of preference. */
const char *const kScpSyntaxes[] = {
	UID_LittleEndianExplicitTransferSyntax,
	UID_LittleEndianImplicitTransferSyntax,
	UID_DeflatedExplicitVRLittleEndianTransferSyntax,
	UID_BigEndianExplicitTransferSyntax,
};
const size_t kScpSyntaxCount = sizeof(kScpSyntaxes) / sizeof(kScpSyntaxes[0]);

namespace
{

struct RecvCtx {
	const struct dcm_store_handler *h;
	const char *calling;
	const char *path;
	bool handed = false; /* stored() now owns the file */
};

unsigned reject(RecvCtx *c, const char *reason)
{
	unlink(c->path);
	if (c->h->rejected)
		c->h->rejected(c->h->ctx, c->calling, reason);
	return STATUS_STORE_Error_CannotUnderstand;
}

/* Parses the received file and hands it over; returns the DIMSE status. */
unsigned finish(RecvCtx *c)
{
	try {
		auto w = std::unique_ptr<dcm_ds>(new dcm_ds);
		w->ff.reset(new DcmFileFormat);
		OFCondition cond = w->ff->loadFile(
		        c->path, EXS_Unknown, EGL_noChange, 4096, ERM_fileOnly);
		if (cond.bad()) {
			std::string r =
			        std::string("unparsable: ") + cond.text();
			return reject(c, r.c_str());
		}
		w->ds = w->ff->getDataset();
		struct dcm_instance_info info;
		struct dcm_err err;
		if (instance_info(w->ds, ds_xfer(w.get()), &info, &err) !=
		    DCM_OK)
			return reject(c, err.msg);
		struct stat st;
		if (stat(c->path, &st) == 0)
			info.file_size = (uint64_t)st.st_size;
		c->handed = true;
		return c->h->stored(c->h->ctx, w.get(), &info, c->path,
		                    c->calling);
	} catch (...) {
		if (c->handed)
			return STATUS_STORE_Refused_OutOfResources;
		return reject(c, "internal error while parsing");
	}
}

/*
 * Where a received instance is written. It never reports a failure to
 * DCMTK: on a write error DIMSE_receiveDataSetInFile waits for the rest
 * of the data set, which never comes when the failing PDV was the last
 * one, and the sender times out. So the first error (a full disk) is kept,
 * the rest of the data set is read and dropped, and the instance is
 * refused with that reason.
 */
class Sink : public DcmConsumer
{
      public:
	explicit Sink(int fd) : fd_(fd)
	{
	}
	OFBool good() const override
	{
		return OFTrue;
	}
	OFCondition status() const override
	{
		return EC_Normal;
	}
	OFBool isFlushed() const override
	{
		return OFTrue;
	}
	offile_off_t avail() const override
	{
		return OFnumeric_limits<offile_off_t>::max();
	}
	offile_off_t write(const void *buf, offile_off_t n) override
	{
		const char *p = static_cast<const char *>(buf);
		for (offile_off_t left = n; left > 0 && err_ == 0;) {
			ssize_t w = ::write(fd_, p, (size_t)left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				err_ = w < 0 ? errno : EIO;
				break;
			}
			p += w;
			left -= w;
		}
		return n;
	}
	void flush() override
	{
	}
	int error() const
	{
		return err_;
	}

      private:
	int fd_;
	int err_ = 0;
};

class SinkStream : public DcmOutputStream
{
      public:
	explicit SinkStream(Sink *s) : DcmOutputStream(s)
	{
	}
};

/* The Part 10 meta header DCMTK itself would write for this C-STORE. */
bool write_meta(DcmOutputStream &out, const T_DIMSE_C_StoreRQ *req,
                const char *ts, const char *calling)
{
	DcmMetaInfo mi;
	Uint8 version[2] = { 0, 1 };
	mi.putAndInsertUint32(DCM_FileMetaInformationGroupLength, 0);
	mi.putAndInsertUint8Array(DCM_FileMetaInformationVersion, version, 2);
	mi.putAndInsertString(DCM_MediaStorageSOPClassUID,
	                      req->AffectedSOPClassUID);
	mi.putAndInsertString(DCM_MediaStorageSOPInstanceUID,
	                      req->AffectedSOPInstanceUID);
	mi.putAndInsertString(DCM_TransferSyntaxUID, ts);
	mi.putAndInsertString(DCM_ImplementationClassUID,
	                      OFFIS_IMPLEMENTATION_CLASS_UID);
	mi.putAndInsertString(DCM_ImplementationVersionName,
	                      OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2);
	if (calling && *calling)
		mi.putAndInsertString(DCM_SourceApplicationEntityTitle,
		                      calling);
	if (mi.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange,
	                                    META_HEADER_DEFAULT_TRANSFERSYNTAX,
	                                    EET_UndefinedLength)
	            .bad())
		return false;
	mi.transferInit();
	OFCondition c = mi.write(out, META_HEADER_DEFAULT_TRANSFERSYNTAX,
	                         EET_ExplicitLength, nullptr);
	mi.transferEnd();
	return c.good() && out.good();
}

} // namespace

/*
 * The file is created once by mkstemps() and written through that same
 * descriptor: reopening it by name with O_TRUNC (as DIMSE_storeProvider
 * does) makes ext4 flush it on close, which costs a lot per instance.
 */
OFCondition
receive_store(T_ASC_Association *assoc, T_ASC_PresentationContextID pcid,
              T_DIMSE_C_StoreRQ *req, const struct dcm_store_handler *h,
              const char *calling_aet, int timeout_s, unsigned *status)
{
	T_DIMSE_C_StoreRSP rsp;
	memset(&rsp, 0, sizeof(rsp));
	rsp.MessageIDBeingRespondedTo = req->MessageID;
	rsp.DataSetType = DIMSE_DATASET_NULL;
	OFStandard::strlcpy(rsp.AffectedSOPClassUID, req->AffectedSOPClassUID,
	                    sizeof(rsp.AffectedSOPClassUID));
	OFStandard::strlcpy(rsp.AffectedSOPInstanceUID,
	                    req->AffectedSOPInstanceUID,
	                    sizeof(rsp.AffectedSOPInstanceUID));
	rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
	if (req->opts & O_STORE_RQ_BLANK_PADDING)
		rsp.opts |= O_STORE_RSP_BLANK_PADDING;

	T_ASC_PresentationContext pc;
	OFCondition c =
	        ASC_findAcceptedPresentationContext(assoc->params, pcid, &pc);
	if (c.bad())
		return c;

	std::string tmpl =
	        std::string(h->tmp_dir ? h->tmp_dir : ".") + "/rx-XXXXXX.tmp";
	std::vector<char> name(tmpl.begin(), tmpl.end());
	name.push_back('\0');
	int fd = mkstemps(name.data(), 4);
	std::string why; /* why the instance cannot be kept */
	T_ASC_PresentationContextID pid = 0;
	bool received = false; /* DCMTK has read the data set */
	if (fd < 0) {
		why = std::string("cannot create ") + name.data() + ": " +
		      strerror(errno);
	} else {
		Sink sink(fd);
		{
			SinkStream out(&sink);
			if (write_meta(out, req, pc.acceptedTransferSyntax,
			               calling_aet)) {
				received = true;
				c = DIMSE_receiveDataSetInFile(
				        assoc, block_mode(timeout_s), timeout_s,
				        &pid, &out, nullptr, nullptr);
			}
			out.flush();
		}
		int e = sink.error();
		if (close(fd) != 0 && e == 0)
			e = errno;
		if (e != 0)
			why = std::string("cannot write ") + name.data() +
			      ": " + strerror(e);
		else if (!received)
			why = "cannot encode the meta header";
	}
	if (!why.empty() && c.good()) {
		/* not kept: drain what DCMTK has not read, refuse */
		if (fd >= 0)
			unlink(name.data());
		if (!received) {
			DIC_UL bytes = 0, pdvs = 0;
			c = DIMSE_ignoreDataSet(assoc, block_mode(timeout_s),
			                        timeout_s, &bytes, &pdvs);
			if (c.bad())
				return c;
		}
		if (h->rejected)
			h->rejected(h->ctx, calling_aet, why.c_str());
		rsp.DimseStatus = STATUS_STORE_Refused_OutOfResources;
	} else if (c.bad() || pid != pcid) {
		if (fd >= 0)
			unlink(name.data());
		if (c.good())
			c = DIMSE_NOVALIDPRESENTATIONCONTEXTID;
		return c;
	} else {
		RecvCtx ctx;
		ctx.h = h;
		ctx.calling = calling_aet;
		ctx.path = name.data();
		rsp.DimseStatus = (DIC_US)finish(&ctx);
	}
	if (status)
		*status = rsp.DimseStatus;
	return DIMSE_sendStoreResponse(assoc, pcid, req, &rsp, nullptr);
}

} // namespace dcmi

using dcmi::fail;

namespace
{

struct Worker {
	std::thread th;
	int sock = -1; /* guarded by dcm_scp::mu; -1 once closed */
	bool done = false;
};

/*
 * DcmTransportConnection::getSocket() is protected; a pointer to member
 * taken in a derived class is the standard way to reach it. The fd is only
 * used to shutdown() a blocked association on dcm_scp_stop().
 */
struct SocketOf : DcmTransportConnection {
	static int get(DcmTransportConnection *c)
	{
		DcmNativeSocketType (DcmTransportConnection::*f)() =
		        &SocketOf::getSocket;
		return (int)(c->*f)();
	}
};

bool in_list(const char *ts, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ts, list[i]) == 0)
			return true;
	return false;
}

/* Storage-like: any storage class, or any UID DCMTK does not know. */
bool storage_like(const char *uid)
{
	if (dcmIsaStorageSOPClassUID(uid, ESSC_All))
		return true;
	return dcmFindNameOfUID(uid, nullptr) == nullptr;
}

} // namespace

struct dcm_scp {
	std::string aet, bind, tmp_dir;
	int port = 0;
	int max_assoc = 1;
	int timeout_s = 0;
	dcm_accept_cb accept = nullptr;
	void *accept_ctx = nullptr;
	struct dcm_store_handler store;
	struct dcm_qr_handler qr;

	T_ASC_Network *net = nullptr;
	int listen_fd = -1;
	int wake[2] = { -1, -1 };
	std::thread acceptor;
	std::atomic<bool> stopping{ false };
	std::mutex mu;
	std::list<Worker> workers;

	void accept_loop();
	void serve(T_ASC_Association *assoc, Worker *w);
	void negotiate(T_ASC_Parameters *params);
	void reap(bool all);
};

void dcm_scp::negotiate(T_ASC_Parameters *params)
{
	int n = ASC_countPresentationContexts(params);
	for (int i = 0; i < n; i++) {
		T_ASC_PresentationContext pc;
		if (ASC_getPresentationContext(params, i, &pc).bad())
			continue;
		bool echo = strcmp(pc.abstractSyntax,
		                   UID_VerificationSOPClass) == 0 ||
		            (qr.find && dcmi::qr_syntax(pc.abstractSyntax));
		if (!echo && !storage_like(pc.abstractSyntax)) {
			ASC_refusePresentationContext(
			        params, pc.presentationContextID,
			        ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
			continue;
		}
		const char *chosen = nullptr;
		/* a proposed compressed syntax first, as the peer ordered */
		for (int k = 0; !echo && !chosen && k < pc.transferSyntaxCount;
		     k++)
			if (in_list(pc.proposedTransferSyntaxes[k],
			            dcmi::kCompressed,
			            sizeof(dcmi::kCompressed) /
			                    sizeof(dcmi::kCompressed[0])))
				chosen = pc.proposedTransferSyntaxes[k];
		size_t nat = echo ? 2 : dcmi::kScpSyntaxCount;
		for (size_t j = 0; !chosen && j < nat; j++)
			for (int k = 0; !chosen && k < pc.transferSyntaxCount;
			     k++)
				if (strcmp(pc.proposedTransferSyntaxes[k],
				           dcmi::kScpSyntaxes[j]) == 0)
					chosen = dcmi::kScpSyntaxes[j];
		/* a C-GET requestor proposes the SCP role for storage */
		if (chosen)
			ASC_acceptPresentationContext(
			        params, pc.presentationContextID, chosen,
			        echo ? ASC_SC_ROLE_DEFAULT : pc.proposedRole,
			        OFTrue);
		else
			ASC_refusePresentationContext(
			        params, pc.presentationContextID,
			        ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
	}
}

/* Runs on the association's own thread; always frees assoc. */
void dcm_scp::serve(T_ASC_Association *assoc, Worker *w)
{
	T_ASC_Parameters *p = assoc->params;
	char calling[DUL_LEN_TITLE + 1], called[DUL_LEN_TITLE + 1];
	dcmi::copy_str(calling, sizeof(calling), p->DULparams.callingAPTitle);
	dcmi::copy_str(called, sizeof(called), p->DULparams.calledAPTitle);
	int reason = 0;
	if (aet != called)
		reason = ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED;
	else if (accept && accept(accept_ctx, calling, called,
	                          p->DULparams.callingPresentationAddress))
		reason = ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED;
	bool ok = false;
	if (reason) {
		T_ASC_RejectParameters rej = {
			ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
			(T_ASC_RejectParametersReason)reason
		};
		ASC_rejectAssociation(assoc, &rej);
	} else {
		negotiate(p);
		ok = ASC_acknowledgeAssociation(assoc).good();
	}
	bool clean = false;
	while (ok && !stopping) {
		T_DIMSE_Message msg;
		T_ASC_PresentationContextID pcid = 0;
		OFCondition c =
		        DIMSE_receiveCommand(assoc, dcmi::block_mode(timeout_s),
		                             timeout_s, &pcid, &msg, nullptr);
		if (c == DUL_PEERREQUESTEDRELEASE) {
			ASC_acknowledgeRelease(assoc);
			clean = true;
			break;
		}
		if (c.bad())
			break; /* abort, timeout, or stop */
		if (msg.CommandField == DIMSE_C_ECHO_RQ) {
			c = DIMSE_sendEchoResponse(assoc, pcid,
			                           &msg.msg.CEchoRQ,
			                           STATUS_Success, nullptr);
		} else if (msg.CommandField == DIMSE_C_STORE_RQ) {
			c = dcmi::receive_store(assoc, pcid, &msg.msg.CStoreRQ,
			                        &store, calling, timeout_s,
			                        nullptr);
		} else if (qr.find && (msg.CommandField == DIMSE_C_FIND_RQ ||
		                       msg.CommandField == DIMSE_C_MOVE_RQ ||
		                       msg.CommandField == DIMSE_C_GET_RQ)) {
			c = dcmi::qr_serve(assoc, pcid, &msg, &qr, calling,
			                   aet.c_str(), timeout_s);
		} else {
			c = DIMSE_BADCOMMANDTYPE;
		}
		if (c.bad())
			break;
	}
	{
		std::lock_guard<std::mutex> lk(mu);
		w->sock = -1; /* stop() must not touch the fd any more */
	}
	/*
	 * An A-ABORT waits (ARTIM) for the peer to close the connection: not
	 * when stopping, where dropping the association closes it at once.
	 */
	if (ok && !clean && !stopping)
		ASC_abortAssociation(assoc);
	if (clean && !stopping)
		ASC_dropSCPAssociation(assoc, 1);
	else
		ASC_dropAssociation(assoc);
	ASC_destroyAssociation(&assoc);
	std::lock_guard<std::mutex> lk(mu);
	w->done = true;
}

void dcm_scp::reap(bool all)
{
	std::list<Worker> dead;
	{
		std::lock_guard<std::mutex> lk(mu);
		for (auto it = workers.begin(); it != workers.end();) {
			auto next = std::next(it);
			if (all || it->done)
				dead.splice(dead.end(), workers, it);
			it = next;
		}
	}
	for (auto &w : dead)
		if (w.th.joinable())
			w.th.join();
}

void dcm_scp::accept_loop()
{
	while (!stopping) {
		struct pollfd fds[2] = { { listen_fd, POLLIN, 0 },
			                 { wake[0], POLLIN, 0 } };
		int r = poll(fds, 2, -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || (fds[1].revents & POLLIN) || stopping)
			break;
		if (!(fds[0].revents & POLLIN))
			continue;
		T_ASC_Association *assoc = nullptr;
		OFCondition c = ASC_receiveAssociation(
		        net, &assoc, dcmi::kMaxPdu, nullptr, nullptr, OFFalse,
		        DUL_NOBLOCK, 1);
		if (c.bad()) {
			if (assoc) {
				ASC_dropAssociation(assoc);
				ASC_destroyAssociation(&assoc);
			}
			continue;
		}
		reap(false);
		std::unique_lock<std::mutex> lk(mu);
		if ((int)workers.size() >= max_assoc) {
			lk.unlock();
			T_ASC_RejectParameters rej = {
				ASC_RESULT_REJECTEDTRANSIENT,
				ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
				ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED
			};
			ASC_rejectAssociation(assoc, &rej);
			ASC_dropAssociation(assoc);
			ASC_destroyAssociation(&assoc);
			continue;
		}
		workers.emplace_back();
		Worker *w = &workers.back();
		DcmTransportConnection *tc =
		        DUL_getTransportConnection(assoc->DULassociation);
		w->sock = tc ? SocketOf::get(tc) : -1;
		try {
			w->th = std::thread(&dcm_scp::serve, this, assoc, w);
		} catch (...) {
			workers.pop_back();
			lk.unlock();
			ASC_abortAssociation(assoc);
			ASC_dropAssociation(assoc);
			ASC_destroyAssociation(&assoc);
		}
	}
}

/* Binds addr:port ourselves (DCMTK 3.6.7 only binds INADDR_ANY). */
static int bind_listen(const char *addr, int port, int *real_port,
                       struct dcm_err *err)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -fail(err, DCM_ERR_ARG, "bad bind address %s", addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -fail(err, DCM_ERR_IO, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	socklen_t len = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		int e = errno;
		close(fd);
		return -fail(err, DCM_ERR_CONNECT, "listen on %s:%d: %s", addr,
		             port, strerror(e));
	}
	*real_port = ntohs(sa.sin_port);
	return fd;
}

extern "C" int dcm_scp_start(const struct dcm_scp_config *cfg,
                             struct dcm_scp **out, struct dcm_err *err)
{
	if (!cfg || !out || !cfg->aet || !cfg->store.stored ||
	    !cfg->store.tmp_dir || cfg->port < 0 || cfg->port > 65535)
		return fail(err, DCM_ERR_ARG, "bad SCP configuration");
	std::unique_ptr<dcm_scp> s;
	int fd = -1;
	try {
		s.reset(new dcm_scp);
		s->aet = cfg->aet;
		s->bind = cfg->bind ? cfg->bind : "0.0.0.0";
		s->tmp_dir = cfg->store.tmp_dir;
		s->max_assoc =
		        cfg->max_associations > 0 ? cfg->max_associations : 1;
		s->timeout_s = cfg->timeout_s;
		s->accept = cfg->accept;
		s->accept_ctx = cfg->accept_ctx;
		s->store = cfg->store;
		s->store.tmp_dir = s->tmp_dir.c_str();
		s->qr = cfg->qr;

		fd = bind_listen(s->bind.c_str(), cfg->port, &s->port, err);
		if (fd < 0)
			return -fd;
		OFCondition c = ASC_initializeNetwork(
		        NET_ACCEPTOR, 0,
		        cfg->timeout_s > 0 ? cfg->timeout_s : 30, &s->net);
		if (c.bad()) {
			close(fd);
			return fail(err, DCM_ERR_NETWORK, "%s", c.text());
		}
		/* Put our socket where DCMTK's wildcard one was. */
		int dfd = (int)DUL_networkSocket(s->net->network);
		if (dfd < 0 || dup3(fd, dfd, O_CLOEXEC) < 0) {
			close(fd);
			ASC_dropNetwork(&s->net);
			return fail(err, DCM_ERR_INTERNAL,
			            "cannot install listen socket");
		}
		close(fd);
		fd = -1;
		s->listen_fd = dfd;
		if (pipe2(s->wake, O_CLOEXEC) != 0) {
			ASC_dropNetwork(&s->net);
			return fail(err, DCM_ERR_IO, "pipe: %s",
			            strerror(errno));
		}
		s->acceptor = std::thread(&dcm_scp::accept_loop, s.get());
		*out = s.release();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		if (fd >= 0)
			close(fd);
		return fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		if (fd >= 0)
			close(fd);
		return fail(err, DCM_ERR_INTERNAL, "exception starting SCP");
	}
}

extern "C" int dcm_scp_port(const struct dcm_scp *scp)
{
	return scp ? scp->port : -1;
}

extern "C" void dcm_scp_stop(struct dcm_scp *scp)
{
	if (!scp)
		return;
	try {
		scp->stopping = true;
		if (scp->wake[1] >= 0) {
			char b = 1;
			ssize_t r = write(scp->wake[1], &b, 1);
			(void)r;
		}
		if (scp->acceptor.joinable())
			scp->acceptor.join();
		{
			/* wake associations blocked in a read */
			std::lock_guard<std::mutex> lk(scp->mu);
			for (auto &w : scp->workers)
				if (w.sock >= 0)
					shutdown(w.sock, SHUT_RDWR);
		}
		scp->reap(true);
		if (scp->net)
			ASC_dropNetwork(&scp->net);
	} catch (...) {
	}
	for (int fd : scp->wake)
		if (fd >= 0)
			close(fd);
	delete scp;
}
