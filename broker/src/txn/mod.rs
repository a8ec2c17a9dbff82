//! The transaction coordinator (KIP-98): transactional ids, their producer ids and epochs,
//! and the transactions they open, kept in the group log beside the groups (a transactional
//! id lives in hash(id) % N, like a group, and the leader of that partition coordinates it).

pub mod coordinator;
pub mod state;
