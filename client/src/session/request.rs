//! Requests as values: the record to send, typed until the session encodes it straight into its
//! output buffer (one encoding, no intermediate body buffer), plus what to do with the reply.

use bytes::{Bytes, BytesMut};

use super::watches::PendingWatch;
use super::Handles;
use zkit_proto::{
    AddWatchRequest, CreateRequest, CreateTtlRequest, MultiOp, MultiRequest, OpCode, PathRequest,
    PathWatchRequest, ReconfigRequest, Record, SetAclRequest, WatchesRequest,
};

/// A create in one of its wire shapes: create/create2/createContainer share one record, createTTL
/// has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    /// create, create2 or createContainer (`op` says which).
    Plain {
        /// The opcode to send.
        op: OpCode,
        /// The record.
        req: CreateRequest,
    },
    /// createTTL.
    Ttl(CreateTtlRequest),
}

impl From<Create> for MultiOp {
    fn from(c: Create) -> MultiOp {
        match c {
            Create::Plain { op, req } => MultiOp::Create { op, req },
            Create::Ttl(r) => MultiOp::CreateTtl(r),
        }
    }
}

/// One request's opcode and record. The opcode follows from the variant, so the two never
/// disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// exists; the record's watch flag is set by the session (see [`Request::watch`]).
    Exists(PathWatchRequest),
    /// getData; watch flag as for `Exists`.
    GetData(PathWatchRequest),
    /// getChildren2; watch flag as for `Exists`.
    GetChildren2(PathWatchRequest),
    /// getACL.
    GetAcl(PathRequest),
    /// sync.
    Sync(PathRequest),
    /// getAllChildrenNumber.
    GetAllChildrenNumber(PathRequest),
    /// getEphemerals.
    GetEphemerals(PathRequest),
    /// setACL.
    SetAcl(Box<SetAclRequest>),
    /// multi.
    Multi(MultiRequest),
    /// multiRead.
    MultiRead(MultiRequest),
    /// checkWatches.
    CheckWatches(WatchesRequest),
    /// removeWatches.
    RemoveWatches(WatchesRequest),
    /// addWatch.
    AddWatch(AddWatchRequest),
    /// reconfig.
    Reconfig(Box<ReconfigRequest>),
    /// whoAmI (no record).
    WhoAmI,
    /// closeSession (no record).
    CloseSession,
    /// A record its caller encoded already: create, delete, setData, and exists / getData /
    /// getChildren without a watch (encoded once, straight from the caller's arguments, with no
    /// typed record in between).
    Encoded {
        /// The opcode to send.
        op: OpCode,
        /// The record's bytes.
        record: Bytes,
    },
}

impl Body {
    /// The opcode written in the request header.
    pub fn op(&self) -> OpCode {
        match self {
            Body::Exists(_) => OpCode::Exists,
            Body::GetData(_) => OpCode::GetData,
            Body::GetChildren2(_) => OpCode::GetChildren2,
            Body::GetAcl(_) => OpCode::GetAcl,
            Body::Sync(_) => OpCode::Sync,
            Body::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Body::GetEphemerals(_) => OpCode::GetEphemerals,
            Body::SetAcl(_) => OpCode::SetAcl,
            Body::Multi(_) => OpCode::Multi,
            Body::MultiRead(_) => OpCode::MultiRead,
            Body::CheckWatches(_) => OpCode::CheckWatches,
            Body::RemoveWatches(_) => OpCode::RemoveWatches,
            Body::AddWatch(_) => OpCode::AddWatch,
            Body::Reconfig(_) => OpCode::Reconfig,
            Body::WhoAmI => OpCode::WhoAmI,
            Body::CloseSession => OpCode::CloseSession,
            Body::Encoded { op, .. } => *op,
        }
    }

    /// The record's "leave a one-shot watch" flag, for the requests that have one.
    pub(super) fn watch_flag(&mut self) -> Option<&mut bool> {
        match self {
            Body::Exists(r) | Body::GetData(r) | Body::GetChildren2(r) => Some(&mut r.watch),
            _ => None,
        }
    }

    /// Appends the record (nothing for the record-less requests).
    pub(super) fn encode(&self, buf: &mut BytesMut) {
        match self {
            Body::Exists(r) | Body::GetData(r) | Body::GetChildren2(r) => r.encode(buf),
            Body::GetAcl(r)
            | Body::Sync(r)
            | Body::GetAllChildrenNumber(r)
            | Body::GetEphemerals(r) => r.encode(buf),
            Body::SetAcl(r) => r.encode(buf),
            Body::Multi(r) | Body::MultiRead(r) => r.encode(buf),
            Body::CheckWatches(r) | Body::RemoveWatches(r) => r.encode(buf),
            Body::AddWatch(r) => r.encode(buf),
            Body::Reconfig(r) => r.encode(buf),
            Body::WhoAmI | Body::CloseSession => {}
            Body::Encoded { record, .. } => buf.extend_from_slice(record),
        }
    }
}

/// A request on its way to the server.
#[derive(Debug)]
pub struct Request<H: Handles> {
    /// What to send.
    pub body: Body,
    /// A watch registered when the reply allows it. For the requests whose record has a watch
    /// flag, the session sets the flag from this field when it encodes the request.
    pub watch: Option<PendingWatch<H>>,
    /// Who gets the reply; `None` for the session's own fire-and-forget requests.
    pub reply: Option<H::Reply>,
}

impl<H: Handles> Request<H> {
    /// A request whose reply goes to `reply`.
    pub fn new(body: Body, watch: Option<PendingWatch<H>>, reply: H::Reply) -> Self {
        Request {
            body,
            watch,
            reply: Some(reply),
        }
    }
}
