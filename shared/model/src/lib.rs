//! Nectar's pure model crate: the PEACH event schema and its validation ([`event`]), the
//! interaction matrix, the recommendation algorithms
//! (popularity, trending, item-to-item, implicit ALS, biased MF), top-k scoring and the
//! offline evaluation used by `nectar eval` and the train task's quality gate, and the one
//! ranker ([`rank`]) that serving, the gate and `nectar eval` share.
//!
//! Nothing here does I/O or async: callers hand in rows and get models and numbers back.
//!
//! ```
//! use nectar_model::algo::als::AlsParams;
//! use nectar_model::algo::{Recommender, Target, UserHistory};
//! use nectar_model::InteractionsBuilder;
//!
//! // Records: (user key, item key, weight, timestamp ms); duplicates are summed.
//! let mut b = InteractionsBuilder::new();
//! for (u, i) in [("ann", "a"), ("ann", "b"), ("bob", "a"), ("bob", "c"), ("cid", "b")] {
//!     b.push(u, i, 1.0, 1_700_000_000_000);
//! }
//! let data = b.build()?;
//! let model = AlsParams::new().factors(4).regularization(0.1).check()?.fit(&data)?;
//!
//! // A known user: train index plus their row (its items are filtered out).
//! let u = data.user_index("cid").unwrap();
//! let (items, values) = data.user_row(u);
//! let recs = model.recommend(Target::Known(u, UserHistory::new(items, values)), 2, true, &[])?;
//! assert!(recs.iter().all(|&(i, _)| data.item_ids()[i as usize] != "b"));
//!
//! // A user unseen at training time is folded in from their history.
//! let a = data.item_index("a").unwrap();
//! let x = model.fold_in(&[(a, 1.0)])?;
//! assert_eq!(x.len(), 4);
//! # Ok::<(), nectar_model::ModelError>(())
//! ```
//!
//! Flat log events become weighted, deduplicated interactions in [`mapping`].
#![warn(missing_docs)]

pub mod algo;
pub mod diversity;
pub mod error;
pub mod evaluation;
pub mod event;
pub mod explain;
pub mod interactions;
pub mod mapping;
pub mod online;
pub mod rank;
pub mod session;
pub mod strict_json;
pub mod synthetic;
pub mod topk;

pub use error::ModelError;
pub use interactions::{Interactions, InteractionsBuilder};
