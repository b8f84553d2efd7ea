//! The trainers' tools: proposals from the anonymised log (`suggest`) and
//! accepting them into the knowledge base's files (`accept`), then tuning
//! the encoder again (`retrain`). The
//! utterances themselves come from `analytics::export`.

pub mod accept;
pub mod heldout;
pub mod retrain;
pub mod suggest;
