//! Test fixture components, compiled by this crate's build script from
//! `tests/guests/programs`. Each constant holds one component's bytes.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
