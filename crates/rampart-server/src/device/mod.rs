//! The native device API (`/device/v1/...` over mutual TLS): polls, reports, attributes, and
//! the image repository and director routes devices read.

mod enrolment;
