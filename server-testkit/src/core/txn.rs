//! Txns: the unit of change. Every write request becomes one [`Txn`] (ZooKeeper's own txn
//! records from [`zkit_proto::txn`]), and [`Database::apply`](super::Database::apply) is the only
//! way state changes — the same txns can later be logged, replicated and replayed.

use bytes::BytesMut;
use zkit_proto::txn::*;
use zkit_proto::{DecodeError, OpCode, Reader, Record};

/// The body of a txn, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnBody {
    /// create (1).
    Create(CreateTxn),
    /// create2 (15): same record, the reply carries a Stat.
    Create2(CreateTxn),
    /// createContainer (19).
    CreateContainer(CreateContainerTxn),
    /// createTTL (21).
    CreateTtl(CreateTtlTxn),
    /// delete (2).
    Delete(DeleteTxn),
    /// deleteContainer (20), issued by the container/TTL reaper.
    DeleteContainer(DeleteTxn),
    /// setData (5).
    SetData(SetDataTxn),
    /// setACL (7).
    SetAcl(SetAclTxn),
    /// check (13).
    Check(CheckVersionTxn),
    /// multi (14): the sub-txns; on abort they are error txns from the failing op on.
    Multi(Vec<TxnBody>),
    /// A failed request (-1).
    Error(ErrorTxn),
    /// createSession (-10).
    CreateSession(CreateSessionTxn),
    /// closeSession (-11).
    CloseSession(CloseSessionTxn),
}

impl TxnBody {
    /// The opcode written as the txn type.
    pub fn op(&self) -> OpCode {
        match self {
            TxnBody::Create(_) => OpCode::Create,
            TxnBody::Create2(_) => OpCode::Create2,
            TxnBody::CreateContainer(_) => OpCode::CreateContainer,
            TxnBody::CreateTtl(_) => OpCode::CreateTtl,
            TxnBody::Delete(_) => OpCode::Delete,
            TxnBody::DeleteContainer(_) => OpCode::DeleteContainer,
            TxnBody::SetData(_) => OpCode::SetData,
            TxnBody::SetAcl(_) => OpCode::SetAcl,
            TxnBody::Check(_) => OpCode::Check,
            TxnBody::Multi(_) => OpCode::Multi,
            TxnBody::Error(_) => OpCode::Error,
            TxnBody::CreateSession(_) => OpCode::CreateSession,
            TxnBody::CloseSession(_) => OpCode::CloseSession,
        }
    }

    /// Appends the record (without header) in ZooKeeper's txn log encoding.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            TxnBody::Create(r) | TxnBody::Create2(r) => r.encode(buf),
            TxnBody::CreateContainer(r) => r.encode(buf),
            TxnBody::CreateTtl(r) => r.encode(buf),
            TxnBody::Delete(r) | TxnBody::DeleteContainer(r) => r.encode(buf),
            TxnBody::SetData(r) => r.encode(buf),
            TxnBody::SetAcl(r) => r.encode(buf),
            TxnBody::Check(r) => r.encode(buf),
            TxnBody::Error(r) => r.encode(buf),
            TxnBody::CreateSession(r) => r.encode(buf),
            TxnBody::CloseSession(r) => r.encode(buf),
            TxnBody::Multi(subs) => MultiTxn {
                txns: subs
                    .iter()
                    .map(|s| {
                        let mut b = BytesMut::new();
                        s.encode(&mut b);
                        // A create2 sub-txn is written as create (1), the same record: ZooKeeper
                        // never logs type 15 inside a multi, and its `DataTree.processTxn`
                        // silently drops a whole multi that holds one on replay.
                        let txn_type = match s {
                            TxnBody::Create2(_) => OpCode::Create.code(),
                            other => other.op().code(),
                        };
                        SubTxn {
                            txn_type,
                            data: b.freeze(),
                        }
                    })
                    .collect(),
            }
            .encode(buf),
        }
    }

    /// Decodes a record of txn type `op`.
    pub fn decode(op: i32, r: &mut Reader) -> Result<TxnBody, DecodeError> {
        Ok(match OpCode::from_code(op)? {
            OpCode::Create => TxnBody::Create(Record::decode(r)?),
            OpCode::Create2 => TxnBody::Create2(Record::decode(r)?),
            OpCode::CreateContainer => TxnBody::CreateContainer(Record::decode(r)?),
            OpCode::CreateTtl => TxnBody::CreateTtl(Record::decode(r)?),
            OpCode::Delete => TxnBody::Delete(Record::decode(r)?),
            OpCode::DeleteContainer => TxnBody::DeleteContainer(Record::decode(r)?),
            OpCode::SetData => TxnBody::SetData(Record::decode(r)?),
            OpCode::SetAcl => TxnBody::SetAcl(Record::decode(r)?),
            OpCode::Check => TxnBody::Check(Record::decode(r)?),
            OpCode::Error => TxnBody::Error(Record::decode(r)?),
            OpCode::CreateSession => TxnBody::CreateSession(Record::decode(r)?),
            OpCode::CloseSession => TxnBody::CloseSession(Record::decode(r)?),
            OpCode::Multi => {
                let m = MultiTxn::decode(r)?;
                let mut subs = Vec::with_capacity(m.txns.len());
                for s in m.txns {
                    subs.push(TxnBody::decode(s.txn_type, &mut Reader::new(s.data))?);
                }
                TxnBody::Multi(subs)
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "txn type",
                    value: op as i64,
                })
            }
        })
    }
}

/// A txn: header (session, cxid, zxid, time, type) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The header; `txn_type` equals `body.op()`.
    pub hdr: TxnHeader,
    /// The body.
    pub body: TxnBody,
}

impl Txn {
    /// Builds a txn, filling the header's type from the body.
    pub fn new(session: i64, cxid: i32, zxid: i64, time: i64, body: TxnBody) -> Txn {
        Txn {
            hdr: TxnHeader {
                client_id: session,
                cxid,
                zxid,
                time,
                txn_type: body.op().code(),
            },
            body,
        }
    }

    /// Header followed by body, as in ZooKeeper's txn log entries.
    #[cfg(test)]
    pub fn to_bytes(&self) -> bytes::Bytes {
        let mut b = BytesMut::new();
        self.hdr.encode(&mut b);
        self.body.encode(&mut b);
        b.freeze()
    }

    /// Inverse of [`Txn::to_bytes`].
    #[cfg(test)]
    pub fn from_bytes(b: bytes::Bytes) -> Result<Txn, DecodeError> {
        let mut r = Reader::new(b);
        let hdr = TxnHeader::decode(&mut r)?;
        let body = TxnBody::decode(hdr.txn_type, &mut r)?;
        Ok(Txn { hdr, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_txn_round_trips_through_bytes() {
        let t = Txn::new(
            7,
            3,
            42,
            1000,
            TxnBody::Multi(vec![
                TxnBody::Create(CreateTxn {
                    path: "/a".into(),
                    parent_cversion: 1,
                    ..Default::default()
                }),
                TxnBody::Error(ErrorTxn {
                    err: zkit_proto::ErrorCode::RuntimeInconsistency.code(),
                }),
            ]),
        );
        assert_eq!(t.hdr.txn_type, 14);
        assert_eq!(Txn::from_bytes(t.to_bytes()).unwrap(), t);
    }
}
