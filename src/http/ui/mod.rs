//! `/ui`: the web dashboard, server-rendered from the same data the JSON API answers and
//! embedded in the binary (markup by maud, one stylesheet and one script; no CDN, no Node).
//! Sessions come from an API token typed once (`session`); every action goes through the
//! API's handlers, so roles, four-eyes, validation and the audit trail are the API's.

pub mod pages;
pub mod session;
pub mod view;
