//! The wire form of Raft's messages between nodes, sans-io.
//!
//! Every integer is big-endian. An optional log id is a flag byte (0 or 1) then, if present,
//! the term and index (u64 each). A vote is its term (u64), the node it is for (u64) and a
//! committed flag (u8). An entry is its index (u64), term (u64), a kind byte (0 blank,
//! 1 normal, 2 membership) and, for the last two, a u32 length and that many bytes: the record
//! batch, or the membership as JSON ([`MembershipRecord`]).
//!
//! ```text
//! request   = group u64, kind u8, body
//!   kind 1 AppendEntries   vote, prev_log_id?, leader_commit?, count u32, entry*
//!   kind 2 Vote            vote, last_log_id?, leadership_transfer u8
//!   kind 3 PreVote         (as Vote)
//!   kind 4 Snapshot        vote, last_log_id?, membership-json, data (u32 length + bytes)
//!   kind 5 TransferLeader  vote, to u64, last_log_id?
//! response  = kind u8, body
//!   kind 1 Append          0 success | 1 partial(log_id?) | 2 conflict | 3 higher(vote)
//!   kind 2 Vote            vote, granted u8, last_log_id?
//!   kind 4 Snapshot        vote
//!   kind 5 TransferLeader  0 ok | 1 vote changed(vote, vote) | 2 not flushed(log_id?, log_id?)
//!   kind 6 Error           u32 length + UTF-8 message
//! ```
//!
//! Decoding never panics on any input and never allocates more than the input could hold: a
//! count is checked against the bytes left before anything is reserved for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::EntryPayload;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderError,
    TransferLeaderRequest, VoteRequest, VoteResponse,
};

use super::{
    Entry, GroupId, LogData, LogId, MembershipRecord, SnapshotMeta, StoredMembership, TypeConfig,
    Vote, log_id,
};

/// A request from one node's Raft group to the same group on another node.
#[derive(Debug)]
pub enum RaftRequest {
    /// AppendEntries (and heartbeats).
    Append(GroupId, AppendEntriesRequest<TypeConfig>),
    /// RequestVote.
    Vote(GroupId, VoteRequest<TypeConfig>),
    /// Pre-vote: would you vote for me?
    PreVote(GroupId, VoteRequest<TypeConfig>),
    /// A whole snapshot.
    Snapshot(GroupId, Vote, SnapshotMeta, Bytes),
    /// Take over leadership.
    TransferLeader(GroupId, TransferLeaderRequest<TypeConfig>),
}

impl RaftRequest {
    /// The group it is for.
    pub fn group(&self) -> GroupId {
        match self {
            RaftRequest::Append(g, _)
            | RaftRequest::Vote(g, _)
            | RaftRequest::PreVote(g, _)
            | RaftRequest::Snapshot(g, ..)
            | RaftRequest::TransferLeader(g, _) => *g,
        }
    }
}

/// The answer to a [`RaftRequest`].
#[derive(Debug)]
pub enum RaftResponse {
    /// To AppendEntries.
    Append(AppendEntriesResponse<TypeConfig>),
    /// To Vote or PreVote.
    Vote(VoteResponse<TypeConfig>),
    /// To Snapshot.
    Snapshot(SnapshotResponse<TypeConfig>),
    /// To TransferLeader.
    TransferLeader(Result<(), TransferLeaderError<TypeConfig>>),
    /// The receiver could not handle it (no such group here, Raft stopped).
    Error(String),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Raft message: {0}")]
pub struct DecodeError(pub &'static str);

type DecodeResult<T> = std::result::Result<T, DecodeError>;

const APPEND: u8 = 1;
const VOTE: u8 = 2;
const PRE_VOTE: u8 = 3;
const SNAPSHOT: u8 = 4;
const TRANSFER: u8 = 5;
const ERROR: u8 = 6;

fn put_log_id(out: &mut BytesMut, id: Option<&LogId>) {
    match id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            out.put_u64(id.leader_id.term);
            out.put_u64(id.index);
        }
    }
}

fn put_vote(out: &mut BytesMut, vote: &Vote) {
    out.put_u64(vote.leader_id.term);
    out.put_u64(vote.leader_id.voted_for);
    out.put_u8(u8::from(vote.committed));
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).expect("messages stay below 4 GiB"));
    out.put_slice(bytes);
}

fn put_entry(out: &mut BytesMut, entry: &Entry) {
    out.put_u64(entry.log_id.index);
    out.put_u64(entry.log_id.leader_id.term);
    match &entry.payload {
        EntryPayload::Blank => out.put_u8(0),
        EntryPayload::Normal(data) => {
            out.put_u8(1);
            put_bytes(out, &data.batch);
        }
        EntryPayload::Membership(m) => {
            out.put_u8(2);
            let json = serde_json::to_vec(&MembershipRecord::of(m)).expect("memberships serialise");
            put_bytes(out, &json);
        }
    }
}

/// Encodes a request.
pub fn encode_request(request: &RaftRequest) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u64(request.group());
    match request {
        RaftRequest::Append(_, req) => {
            out.put_u8(APPEND);
            put_vote(&mut out, &req.vote);
            put_log_id(&mut out, req.prev_log_id.as_ref());
            put_log_id(&mut out, req.leader_commit.as_ref());
            out.put_u32(u32::try_from(req.entries.len()).expect("entry counts fit u32"));
            for entry in &req.entries {
                put_entry(&mut out, entry);
            }
        }
        RaftRequest::Vote(_, req) | RaftRequest::PreVote(_, req) => {
            out.put_u8(if matches!(request, RaftRequest::Vote(..)) {
                VOTE
            } else {
                PRE_VOTE
            });
            put_vote(&mut out, &req.vote);
            put_log_id(&mut out, req.last_log_id.as_ref());
            out.put_u8(u8::from(req.leadership_transfer));
        }
        RaftRequest::Snapshot(_, vote, meta, data) => {
            out.put_u8(SNAPSHOT);
            put_vote(&mut out, vote);
            put_log_id(&mut out, meta.last_log_id.as_ref());
            let membership = MembershipFileWire {
                log_id: meta
                    .last_membership
                    .log_id()
                    .as_ref()
                    .map(|l| (l.index, l.leader_id.term)),
                record: MembershipRecord::of(meta.last_membership.membership()),
            };
            put_bytes(
                &mut out,
                &serde_json::to_vec(&membership).expect("memberships serialise"),
            );
            put_bytes(&mut out, data);
        }
        RaftRequest::TransferLeader(_, req) => {
            out.put_u8(TRANSFER);
            put_vote(&mut out, req.from_leader());
            out.put_u64(*req.to_node_id());
            put_log_id(&mut out, req.last_log_id());
        }
    }
    out.freeze()
}

/// The membership of a snapshot, as sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct MembershipFileWire {
    log_id: Option<(u64, u64)>,
    record: MembershipRecord,
}

/// Encodes a response.
pub fn encode_response(response: &RaftResponse) -> Bytes {
    let mut out = BytesMut::with_capacity(32);
    match response {
        RaftResponse::Append(resp) => {
            out.put_u8(APPEND);
            match resp {
                AppendEntriesResponse::Success => out.put_u8(0),
                AppendEntriesResponse::PartialSuccess(id) => {
                    out.put_u8(1);
                    put_log_id(&mut out, id.as_ref());
                }
                AppendEntriesResponse::Conflict => out.put_u8(2),
                AppendEntriesResponse::HigherVote(vote) => {
                    out.put_u8(3);
                    put_vote(&mut out, vote);
                }
            }
        }
        RaftResponse::Vote(resp) => {
            out.put_u8(VOTE);
            put_vote(&mut out, &resp.vote);
            out.put_u8(u8::from(resp.vote_granted));
            put_log_id(&mut out, resp.last_log_id.as_ref());
        }
        RaftResponse::Snapshot(resp) => {
            out.put_u8(SNAPSHOT);
            put_vote(&mut out, &resp.vote);
        }
        RaftResponse::TransferLeader(result) => {
            out.put_u8(TRANSFER);
            match result {
                Ok(()) => out.put_u8(0),
                Err(TransferLeaderError::VoteChanged { expected, actual }) => {
                    out.put_u8(1);
                    put_vote(&mut out, expected);
                    put_vote(&mut out, actual);
                }
                Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                    out.put_u8(2);
                    put_log_id(&mut out, expected.as_ref());
                    put_log_id(&mut out, actual.as_ref());
                }
            }
        }
        RaftResponse::Error(message) => {
            out.put_u8(ERROR);
            put_bytes(&mut out, message.as_bytes());
        }
    }
    out.freeze()
}

/// Reads from a message's bytes, checking every length against what is left.
struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> DecodeResult<()> {
        if self.bytes.remaining() < n {
            Err(DecodeError("truncated"))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> DecodeResult<u8> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }

    fn u32(&mut self) -> DecodeResult<u32> {
        self.need(4)?;
        Ok(self.bytes.get_u32())
    }

    fn u64(&mut self) -> DecodeResult<u64> {
        self.need(8)?;
        Ok(self.bytes.get_u64())
    }

    fn flag(&mut self) -> DecodeResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("a flag is neither 0 nor 1")),
        }
    }

    fn bytes(&mut self) -> DecodeResult<Bytes> {
        let len = self.u32()? as usize;
        self.need(len)?;
        Ok(self.bytes.split_to(len))
    }

    fn log_id(&mut self) -> DecodeResult<Option<LogId>> {
        if !self.flag()? {
            return Ok(None);
        }
        let term = self.u64()?;
        let index = self.u64()?;
        Ok(Some(log_id(term, index)))
    }

    fn vote(&mut self) -> DecodeResult<Vote> {
        let term = self.u64()?;
        let node = self.u64()?;
        Ok(if self.flag()? {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        })
    }

    fn membership(&mut self) -> DecodeResult<super::RaftMembership> {
        let json = self.bytes()?;
        let record: MembershipRecord =
            serde_json::from_slice(&json).map_err(|_| DecodeError("membership is not JSON"))?;
        record
            .to_membership()
            .map_err(|_| DecodeError("membership names a voter that is not a node"))
    }

    fn entry(&mut self) -> DecodeResult<Entry> {
        let index = self.u64()?;
        let term = self.u64()?;
        let payload = match self.u8()? {
            0 => EntryPayload::Blank,
            1 => EntryPayload::Normal(LogData::new(self.bytes()?)),
            2 => EntryPayload::Membership(self.membership()?),
            _ => return Err(DecodeError("unknown entry kind")),
        };
        Ok(Entry {
            log_id: log_id(term, index),
            payload,
        })
    }

    fn end(&self) -> DecodeResult<()> {
        if self.bytes.has_remaining() {
            Err(DecodeError("trailing bytes"))
        } else {
            Ok(())
        }
    }
}

/// Smallest encoding of one entry: index, term, kind.
const ENTRY_BYTES_MIN: usize = 17;

/// Decodes a request.
///
/// # Errors
///
/// [`DecodeError`] naming what does not fit.
pub fn decode_request(bytes: Bytes) -> DecodeResult<RaftRequest> {
    let mut r = Reader { bytes };
    let group = r.u64()?;
    let request = match r.u8()? {
        APPEND => {
            let vote = r.vote()?;
            let prev_log_id = r.log_id()?;
            let leader_commit = r.log_id()?;
            let count = r.u32()? as usize;
            r.need(count.saturating_mul(ENTRY_BYTES_MIN))?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(r.entry()?);
            }
            RaftRequest::Append(
                group,
                AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    entries,
                    leader_commit,
                },
            )
        }
        kind @ (VOTE | PRE_VOTE) => {
            let vote = r.vote()?;
            let last_log_id = r.log_id()?;
            let mut req = VoteRequest::new(vote, last_log_id);
            req.leadership_transfer = r.flag()?;
            if kind == VOTE {
                RaftRequest::Vote(group, req)
            } else {
                RaftRequest::PreVote(group, req)
            }
        }
        SNAPSHOT => {
            let vote = r.vote()?;
            let last_log_id = r.log_id()?;
            let json = r.bytes()?;
            let wire: MembershipFileWire = serde_json::from_slice(&json)
                .map_err(|_| DecodeError("snapshot membership is not JSON"))?;
            let membership = wire
                .record
                .to_membership()
                .map_err(|_| DecodeError("snapshot membership names an unknown voter"))?;
            let meta = SnapshotMeta {
                last_log_id,
                last_membership: StoredMembership::new(
                    wire.log_id.map(|(i, t)| log_id(t, i)),
                    membership,
                ),
            };
            let data = r.bytes()?;
            RaftRequest::Snapshot(group, vote, meta, data)
        }
        TRANSFER => {
            let vote = r.vote()?;
            let to = r.u64()?;
            let last = r.log_id()?;
            RaftRequest::TransferLeader(group, TransferLeaderRequest::new(vote, to, last))
        }
        _ => return Err(DecodeError("unknown request kind")),
    };
    r.end()?;
    Ok(request)
}

/// Decodes a response.
///
/// # Errors
///
/// [`DecodeError`] naming what does not fit.
pub fn decode_response(bytes: Bytes) -> DecodeResult<RaftResponse> {
    let mut r = Reader { bytes };
    let response = match r.u8()? {
        APPEND => RaftResponse::Append(match r.u8()? {
            0 => AppendEntriesResponse::Success,
            1 => AppendEntriesResponse::PartialSuccess(r.log_id()?),
            2 => AppendEntriesResponse::Conflict,
            3 => AppendEntriesResponse::HigherVote(r.vote()?),
            _ => return Err(DecodeError("unknown append outcome")),
        }),
        VOTE => {
            let vote = r.vote()?;
            let granted = r.flag()?;
            let last = r.log_id()?;
            RaftResponse::Vote(VoteResponse::new(vote, last, granted))
        }
        SNAPSHOT => RaftResponse::Snapshot(SnapshotResponse::new(r.vote()?)),
        TRANSFER => RaftResponse::TransferLeader(match r.u8()? {
            0 => Ok(()),
            1 => Err(TransferLeaderError::VoteChanged {
                expected: r.vote()?,
                actual: r.vote()?,
            }),
            2 => Err(TransferLeaderError::LogNotFlushed {
                expected: r.log_id()?,
                actual: r.log_id()?,
            }),
            _ => return Err(DecodeError("unknown transfer outcome")),
        }),
        ERROR => {
            let message = r.bytes()?;
            RaftResponse::Error(String::from_utf8_lossy(&message).into_owned())
        }
        _ => return Err(DecodeError("unknown response kind")),
    };
    r.end()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{EmptyNode, Membership};
    use proptest::prelude::*;

    use super::*;

    fn membership() -> super::super::RaftMembership {
        Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, EmptyNode {}),
                (2, EmptyNode {}),
                (3, EmptyNode {}),
                (9, EmptyNode {}),
            ]),
        )
        .unwrap()
    }

    fn requests() -> Vec<RaftRequest> {
        vec![
            RaftRequest::Append(
                7,
                AppendEntriesRequest {
                    vote: Vote::new_committed(3, 2),
                    prev_log_id: Some(log_id(2, 10)),
                    entries: vec![
                        Entry {
                            log_id: log_id(3, 11),
                            payload: EntryPayload::Blank,
                        },
                        Entry {
                            log_id: log_id(3, 12),
                            payload: EntryPayload::Normal(LogData::new(Bytes::from_static(
                                b"a batch",
                            ))),
                        },
                        Entry {
                            log_id: log_id(3, 13),
                            payload: EntryPayload::Membership(membership()),
                        },
                    ],
                    leader_commit: Some(log_id(2, 9)),
                },
            ),
            RaftRequest::Vote(1, VoteRequest::new(Vote::new(4, 1), None)),
            RaftRequest::PreVote(1, {
                let mut r = VoteRequest::new(Vote::new(4, 1), Some(log_id(3, 99)));
                r.leadership_transfer = true;
                r
            }),
            RaftRequest::Snapshot(
                0,
                Vote::new_committed(5, 3),
                SnapshotMeta {
                    last_log_id: Some(log_id(5, 1000)),
                    last_membership: StoredMembership::new(Some(log_id(1, 3)), membership()),
                },
                Bytes::from_static(b"{\"state\":1}"),
            ),
            RaftRequest::TransferLeader(
                3,
                TransferLeaderRequest::new(Vote::new_committed(6, 1), 2, Some(log_id(6, 40))),
            ),
        ]
    }

    #[test]
    fn requests_round_trip() {
        for request in requests() {
            let bytes = encode_request(&request);
            let back = decode_request(bytes.clone()).unwrap();
            assert_eq!(encode_request(&back), bytes, "{request:?}");
            assert_eq!(format!("{back:?}"), format!("{request:?}"));
        }
    }

    #[test]
    fn responses_round_trip() {
        let responses = vec![
            RaftResponse::Append(AppendEntriesResponse::Success),
            RaftResponse::Append(AppendEntriesResponse::PartialSuccess(Some(log_id(1, 2)))),
            RaftResponse::Append(AppendEntriesResponse::PartialSuccess(None)),
            RaftResponse::Append(AppendEntriesResponse::Conflict),
            RaftResponse::Append(AppendEntriesResponse::HigherVote(Vote::new(9, 3))),
            RaftResponse::Vote(VoteResponse::new(Vote::new(4, 1), Some(log_id(3, 3)), true)),
            RaftResponse::Snapshot(SnapshotResponse::new(Vote::new_committed(2, 2))),
            RaftResponse::TransferLeader(Ok(())),
            RaftResponse::TransferLeader(Err(TransferLeaderError::VoteChanged {
                expected: Vote::new(1, 1),
                actual: Vote::new(2, 2),
            })),
            RaftResponse::TransferLeader(Err(TransferLeaderError::LogNotFlushed {
                expected: Some(log_id(1, 5)),
                actual: None,
            })),
            RaftResponse::Error("no group 7 here".into()),
        ];
        for response in responses {
            let bytes = encode_response(&response);
            let back = decode_response(bytes.clone()).unwrap();
            assert_eq!(encode_response(&back), bytes, "{response:?}");
        }
    }

    #[test]
    fn a_huge_entry_count_in_a_tiny_message_is_refused_before_allocating() {
        let mut out = BytesMut::new();
        out.put_u64(1);
        out.put_u8(APPEND);
        put_vote(&mut out, &Vote::new(1, 1));
        put_log_id(&mut out, None);
        put_log_id(&mut out, None);
        out.put_u32(u32::MAX);
        assert_eq!(
            decode_request(out.freeze()).unwrap_err(),
            DecodeError("truncated")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_request(Bytes::from(bytes.clone()));
            let _ = decode_response(Bytes::from(bytes));
        }

        #[test]
        fn every_truncation_of_a_request_is_an_error(cut in 0usize..400) {
            for request in requests() {
                let bytes = encode_request(&request);
                if cut < bytes.len() {
                    prop_assert!(decode_request(bytes.slice(..cut)).is_err());
                }
            }
        }
    }
}
