//! multi (14) and multiRead (22) bodies: a sequence of `MultiHeader` + op record, ended by a
//! `{-1, true, -1}` terminator (`docs/protocol.md` §5).

use bytes::{Bytes, BytesMut};

use super::codec::{DecodeError, Reader, Record};
use super::consts::OpCode;
use super::records::*;

/// One operation inside a multi or multiRead request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiOp {
    /// create (1), create2 (15) or createContainer (19); `op` says which.
    Create {
        /// The opcode to send.
        op: OpCode,
        /// The request.
        req: CreateRequest,
    },
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete(DeleteRequest),
    /// setData (5).
    SetData(SetDataRequest),
    /// check (13).
    Check(CheckVersionRequest),
    /// getData (4), multiRead only.
    GetData(PathWatchRequest),
    /// getChildren (8), multiRead only.
    GetChildren(PathWatchRequest),
}

impl MultiOp {
    /// The opcode written in this op's header.
    pub fn opcode(&self) -> OpCode {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetData(_) => OpCode::GetData,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
        }
    }

    /// The path the op addresses.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create { req, .. } => &req.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => &r.path,
        }
    }

    /// Mutable access to the path (to apply or strip a chroot).
    pub fn path_mut(&mut self) -> &mut String {
        match self {
            MultiOp::Create { req, .. } => &mut req.path,
            MultiOp::CreateTtl(r) => &mut r.path,
            MultiOp::Delete(r) => &mut r.path,
            MultiOp::SetData(r) => &mut r.path,
            MultiOp::Check(r) => &mut r.path,
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => &mut r.path,
        }
    }
}

const TERMINATOR: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

/// The body of a multi or multiRead request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    /// The operations, in order.
    pub ops: Vec<MultiOp>,
}

impl Record for MultiRequest {
    fn encode(&self, buf: &mut BytesMut) {
        for op in &self.ops {
            MultiHeader {
                op: op.opcode().code(),
                done: false,
                err: -1,
            }
            .encode(buf);
            match op {
                MultiOp::Create { req, .. } => req.encode(buf),
                MultiOp::CreateTtl(r) => r.encode(buf),
                MultiOp::Delete(r) => r.encode(buf),
                MultiOp::SetData(r) => r.encode(buf),
                MultiOp::Check(r) => r.encode(buf),
                MultiOp::GetData(r) | MultiOp::GetChildren(r) => r.encode(buf),
            }
        }
        TERMINATOR.encode(buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut ops = Vec::new();
        loop {
            let h = MultiHeader::decode(r)?;
            if h.done {
                return Ok(MultiRequest { ops });
            }
            let op = OpCode::from_code(h.op)?;
            ops.push(match op {
                OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => MultiOp::Create {
                    op,
                    req: CreateRequest::decode(r)?,
                },
                OpCode::CreateTtl => MultiOp::CreateTtl(Record::decode(r)?),
                OpCode::Delete => MultiOp::Delete(Record::decode(r)?),
                OpCode::SetData => MultiOp::SetData(Record::decode(r)?),
                OpCode::Check => MultiOp::Check(Record::decode(r)?),
                OpCode::GetData => MultiOp::GetData(Record::decode(r)?),
                OpCode::GetChildren => MultiOp::GetChildren(Record::decode(r)?),
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "multi op",
                        value: h.op as i64,
                    })
                }
            });
        }
    }
}

/// One result inside a multi or multiRead response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiResult {
    /// create: the path.
    Create(String),
    /// create2 / createContainer / createTTL: path and Stat.
    Create2(Create2Response),
    /// delete.
    Delete,
    /// setData: the new Stat.
    SetData(Stat),
    /// check.
    Check,
    /// getData (multiRead).
    GetData(GetDataResponse),
    /// getChildren (multiRead).
    GetChildren(Vec<String>),
    /// An error entry; 0 means "rolled back" in an aborted multi.
    Error(i32),
}

impl MultiResult {
    fn opcode(&self) -> OpCode {
        match self {
            MultiResult::Create(_) => OpCode::Create,
            MultiResult::Create2(_) => OpCode::Create2,
            MultiResult::Delete => OpCode::Delete,
            MultiResult::SetData(_) => OpCode::SetData,
            MultiResult::Check => OpCode::Check,
            MultiResult::GetData(_) => OpCode::GetData,
            MultiResult::GetChildren(_) => OpCode::GetChildren,
            MultiResult::Error(_) => OpCode::Error,
        }
    }
}

/// The body of a multi or multiRead response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    /// One result per op, in order.
    pub results: Vec<MultiResult>,
}

impl Record for MultiResponse {
    fn encode(&self, buf: &mut BytesMut) {
        for res in &self.results {
            let err = match res {
                MultiResult::Error(e) => *e,
                _ => 0,
            };
            MultiHeader {
                op: res.opcode().code(),
                done: false,
                err,
            }
            .encode(buf);
            match res {
                MultiResult::Create(p) => p.encode(buf),
                MultiResult::Create2(r) => r.encode(buf),
                MultiResult::Delete | MultiResult::Check => {}
                MultiResult::SetData(s) => s.encode(buf),
                MultiResult::GetData(r) => r.encode(buf),
                MultiResult::GetChildren(c) => c.encode(buf),
                MultiResult::Error(e) => e.encode(buf),
            }
        }
        TERMINATOR.encode(buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut results = Vec::new();
        loop {
            let h = MultiHeader::decode(r)?;
            if h.done {
                return Ok(MultiResponse { results });
            }
            results.push(match OpCode::from_code(h.op)? {
                OpCode::Create => MultiResult::Create(String::decode(r)?),
                OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                    MultiResult::Create2(Record::decode(r)?)
                }
                OpCode::Delete | OpCode::DeleteContainer => MultiResult::Delete,
                OpCode::SetData => MultiResult::SetData(Record::decode(r)?),
                OpCode::Check => MultiResult::Check,
                OpCode::GetData => MultiResult::GetData(Record::decode(r)?),
                OpCode::GetChildren => MultiResult::GetChildren(Record::decode(r)?),
                OpCode::Error => MultiResult::Error(i32::decode(r)?),
                _ => {
                    return Err(DecodeError::InvalidValue {
                        field: "multi result",
                        value: h.op as i64,
                    })
                }
            });
        }
    }
}

/// Convenience: a `MultiResult::GetData` with the given data and Stat.
pub fn get_data_result(data: Option<Bytes>, stat: Stat) -> MultiResult {
    MultiResult::GetData(GetDataResponse { data, stat })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_request_round_trips() {
        let m = MultiRequest {
            ops: vec![
                MultiOp::Create {
                    op: OpCode::Create2,
                    req: CreateRequest {
                        path: "/a".into(),
                        data: Some(Bytes::from_static(b"x")),
                        acl: vec![],
                        flags: 0,
                    },
                },
                MultiOp::Check(CheckVersionRequest {
                    path: "/a".into(),
                    version: 0,
                }),
                MultiOp::Delete(DeleteRequest {
                    path: "/a".into(),
                    version: -1,
                }),
            ],
        };
        let b = m.to_bytes();
        assert_eq!(MultiRequest::from_bytes(b.clone()).unwrap(), m);
        // Terminator: op -1, done true, err -1.
        assert_eq!(
            &b[b.len() - 9..],
            &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn aborted_multi_response_round_trips() {
        let m = MultiResponse {
            results: vec![
                MultiResult::Error(0),
                MultiResult::Error(-103),
                MultiResult::Error(-2),
            ],
        };
        assert_eq!(MultiResponse::from_bytes(m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn missing_terminator_is_an_error() {
        let m = MultiResponse {
            results: vec![MultiResult::Delete],
        };
        let b = m.to_bytes();
        assert!(MultiResponse::from_bytes(b.slice(..b.len() - 9)).is_err());
    }
}
