//! The HTTP surface shared by every service: errors as clients see them ([`error`]), request
//! parsing ([`request`]) and JSON answers ([`response`]).

pub mod error;
pub mod request;
pub mod response;
