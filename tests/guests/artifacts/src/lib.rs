//! Test fixture components, compiled by this crate's build script from
//! `tests/guests/programs` (fixtures) and `guest-sdk/examples` (the SDK's
//! examples). Each constant holds one component's bytes.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
