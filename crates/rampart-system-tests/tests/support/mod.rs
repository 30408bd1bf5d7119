//! What several system tests share.

pub mod log_site;
pub mod tpm_site;
