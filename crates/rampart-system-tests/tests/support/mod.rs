//! What several system tests share.

pub mod tpm_site;
