//! Outbound signed webhooks: HMAC signatures, SSRF-safe targets, delivery over awc and retry
//! backoff.
//!
//! - [`signature`] / [`verify`]: `X-Multicloud-Signature: sha256=<hex>` over `"<timestamp>.<body>"`;
//! - [`parse_target`], [`check_target`], [`forbidden_reason`]: which URLs may receive webhooks
//!   (no loopback, private, link-local, ... addresses unless `allow_private`);
//! - [`send`]: one delivery attempt, re-checking the resolved addresses at connect time;
//! - [`backoff`]: delay before the next attempt.

mod backoff;
mod send;
mod sign;
mod target;

pub use backoff::backoff;
pub use send::{
    EXCERPT_MAX, HEADER_ATTEMPT, HEADER_EVENT, HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    Outcome, Outgoing, Policy, send,
};
pub use sign::{signature, verify};
pub use target::{
    Host, MAX_URL_LEN, Target, TargetError, check_target, forbidden_reason, parse_target,
};
