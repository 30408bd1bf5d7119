//! Pure device boot logic, with no I/O: the A/B slot model the agent and the simulated
//! bootloader share ([`ab`]), and the on-disk formats of the bootloader environments the agent
//! writes natively.
#![forbid(unsafe_code)]

pub mod ab;
pub mod flow;
pub mod grubenv;
pub mod ubootenv;
