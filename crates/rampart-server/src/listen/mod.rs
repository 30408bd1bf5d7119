//! The listeners and what every request meets before a front door: the device API's
//! mutual-TLS listener, the HTTPS listener of the DDI and management APIs, the error document
//! and body limits of every answer, failed-authentication throttling, and the audit summary of
//! refused connections.

pub mod auth_failures;
pub mod http;
pub mod https;
pub mod mtls;
pub mod refusals;
