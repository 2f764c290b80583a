//! Test fixture components, compiled from `tests/guests/programs` by this
//! crate's build script. Each constant holds one component's bytes.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
