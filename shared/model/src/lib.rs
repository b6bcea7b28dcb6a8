//! Nectar's pure model crate: the interaction matrix, the recommendation algorithms
//! (popularity, trending, item-to-item, implicit ALS, biased MF), top-k scoring and the
//! offline evaluation used by `nectar eval` and the train task's quality gate.
//!
//! Nothing here does I/O or async: callers hand in rows and get models and numbers back.
#![warn(missing_docs)]

pub mod algo;
pub mod error;
pub mod evaluation;
pub mod interactions;
pub mod synthetic;
pub mod topk;

pub use error::ModelError;
pub use interactions::{Interactions, InteractionsBuilder};
