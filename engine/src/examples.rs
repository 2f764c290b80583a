//! The SDK's example handlers as components, compiled from
//! `guest-sdk/examples` by the build script: `TEMPLATE`, `CONTACTS_SUMMARY`,
//! `CSV_EXPORT` and `TASKS` hold each one's bytes.

include!(concat!(env!("OUT_DIR"), "/examples.rs"));
