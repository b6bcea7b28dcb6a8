//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong when building data, fitting or scoring a model.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// A hyper-parameter failed validation in `check()`.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name, as used on the command line and in config.
        name: String,
        /// Why the value was refused.
        reason: String,
    },
    /// The interaction matrix has no users, no items or no entries.
    #[error("the interaction matrix is empty")]
    EmptyData,
    /// A user or item index is outside the model.
    #[error("{what} index {index} is out of range (size {len})")]
    OutOfRange {
        /// `"user"` or `"item"`.
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// The number of rows the model has.
        len: usize,
    },
    /// A record or input row could not be used.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model's dimensions do not match the data it is used with.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

impl ModelError {
    /// Shorthand for [`ModelError::InvalidParam`].
    pub fn param(name: &str, reason: impl Into<String>) -> Self {
        ModelError::InvalidParam {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
