//! The trainers' tools: proposals from the anonymised log (`suggest`) and
//! accepting them into the knowledge base's files (`accept`). The
//! utterances themselves come from `analytics::export`.

pub mod accept;
pub mod heldout;
pub mod suggest;
