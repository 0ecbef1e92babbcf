//! DNS wire format for onedot.
//!
//! `proto` owns everything that turns bytes into DNS values and back:
//!
//! * [`query::QueryView`] — a zero-copy, allocation-free view of a client
//!   query (the first step of the hot path);
//! * [`message::Message`] — a full, owned parse of any DNS message, with name
//!   decompression bounded by a pointer budget (used on upstream replies);
//! * [`build::MessageWriter`] — a response and query writer with name
//!   compression, EDNS(0), Extended DNS Errors and UDP truncation;
//! * [`name::Name`] — owned, lower-cased wire-format domain names.
//!
//! Invariants: this crate does no I/O, never panics on input, and every loop
//! over input bytes is bounded by the input length or an explicit budget.

pub mod build;
pub mod cookie;
pub mod ede;
pub mod message;
pub mod name;
pub mod query;
pub mod time;
pub mod wire;
pub mod zonefile;

pub use build::MessageWriter;
pub use ede::Ede;
pub use message::{Edns, Message, Question, Record};
pub use name::Name;
pub use query::{EdnsView, QueryError, QueryView};
pub use wire::{Rcode, class, flags, rtype};

/// Errors from decoding DNS wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message ended in the middle of a field.
    #[error("message truncated")]
    Truncated,
    /// A compression pointer pointed forward, to itself, or out of range.
    #[error("bad compression pointer")]
    BadPointer,
    /// More compression pointers were followed than the budget allows.
    #[error("too many compression pointers")]
    PointerBudget,
    /// A name is longer than 255 octets or a label longer than 63.
    #[error("name too long")]
    NameTooLong,
    /// A label type other than a normal label or a pointer (RFC 6891 §5).
    #[error("unsupported label type")]
    BadLabelType,
    /// Record data does not match its declared length or type.
    #[error("malformed record data")]
    BadRdata,
    /// The message has a structure that the protocol forbids (for example
    /// two OPT records, or more than one question).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Text that should be a domain name is not one.
    #[error("invalid domain name text")]
    BadText,
}
