//! Server-side transaction records (`zookeeper.jute` txn section, `docs/disk-format.md` §4.2):
//! what a server logs, replicates and replays. The client never sends these; the testkit server
//! shares them so that its txn log is byte-compatible with Apache ZooKeeper's.

use bytes::{Bytes, BytesMut};

use super::codec::{DecodeError, Reader, Record};
use super::records::{record, Acl};

record! {
    /// Header of every txn (32 bytes).
    TxnHeader {
        /// Session id of the requester.
        client_id: i64,
        /// The request's xid.
        cxid: i32,
        /// Zxid assigned to the txn.
        zxid: i64,
        /// Leader's wall clock, ms since the epoch (becomes ctime / mtime).
        time: i64,
        /// Opcode of the txn.
        txn_type: i32,
    }
}

record! {
    /// create / create2 txn.
    CreateTxn {
        /// Final path (sequential suffix included).
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Whether the node is ephemeral (owner = TxnHeader.client_id).
        ephemeral: bool,
        /// Parent's cversion after the create.
        parent_cversion: i32,
    }
}

record! {
    /// createContainer txn.
    CreateContainerTxn {
        /// Path.
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Parent's cversion after the create.
        parent_cversion: i32,
    }
}

record! {
    /// createTTL txn.
    CreateTtlTxn {
        /// Path.
        path: String,
        /// Data.
        data: Option<Bytes>,
        /// ACL.
        acl: Vec<Acl>,
        /// Parent's cversion after the create.
        parent_cversion: i32,
        /// TTL, ms.
        ttl: i64,
    }
}

record! {
    /// delete / deleteContainer txn.
    DeleteTxn {
        /// Path.
        path: String,
    }
}

record! {
    /// setData (and reconfig) txn.
    SetDataTxn {
        /// Path.
        path: String,
        /// New data.
        data: Option<Bytes>,
        /// The new version.
        version: i32,
    }
}

record! {
    /// setACL txn.
    SetAclTxn {
        /// Path.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// The new aversion.
        version: i32,
    }
}

record! {
    /// check txn (inside a multi); version = current + 1.
    CheckVersionTxn {
        /// Path.
        path: String,
        /// Version.
        version: i32,
    }
}

record! {
    /// A failed request (or failed op in a multi).
    ErrorTxn {
        /// The error code.
        err: i32,
    }
}

record! {
    /// createSession txn.
    CreateSessionTxn {
        /// Negotiated timeout, ms.
        time_out: i32,
    }
}

record! {
    /// closeSession txn (3.6+ carries the ephemerals to delete).
    CloseSessionTxn {
        /// Ephemeral paths deleted with the session.
        paths2_delete: Vec<String>,
    }
}

record! {
    /// One sub-txn of a multi: its type and its serialized record.
    SubTxn {
        /// Opcode of the sub-txn.
        txn_type: i32,
        /// The serialized sub-record.
        data: Bytes,
    }
}

record! {
    /// multi txn.
    MultiTxn {
        /// Sub-txns in order.
        txns: Vec<SubTxn>,
    }
}

record! {
    /// Optional trailer after a txn body: digest of the tree after the txn.
    TxnDigest {
        /// Digest version (2).
        version: i32,
        /// Tree digest.
        tree_digest: i64,
    }
}

/// Encodes a record into a standalone buffer (used for [`SubTxn::data`]).
pub fn record_bytes<R: Record>(r: &R) -> Bytes {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    b.freeze()
}

/// Decodes a [`SubTxn`]'s data as `R`.
pub fn decode_sub<R: Record>(sub: &SubTxn) -> Result<R, DecodeError> {
    R::decode(&mut Reader::new(sub.data.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_header_is_32_bytes() {
        assert_eq!(TxnHeader::default().to_bytes().len(), 32);
    }

    #[test]
    fn multi_txn_round_trips() {
        let m = MultiTxn {
            txns: vec![
                SubTxn {
                    txn_type: 1,
                    data: record_bytes(&CreateTxn {
                        path: "/m".into(),
                        ..Default::default()
                    }),
                },
                SubTxn {
                    txn_type: -1,
                    data: record_bytes(&ErrorTxn { err: -103 }),
                },
            ],
        };
        let back = MultiTxn::from_bytes(m.to_bytes()).unwrap();
        assert_eq!(back, m);
        let c: CreateTxn = decode_sub(&back.txns[0]).unwrap();
        assert_eq!(c.path, "/m");
    }
}
