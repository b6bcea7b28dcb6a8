//! The HTTP surface shared by every service: errors as clients see them ([`error`]), request
//! parsing ([`request`]) and JSON answers ([`response`]).

pub mod answers;
pub mod error;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "openapi")]
pub mod openapi_html;
pub mod request;
pub mod response;
