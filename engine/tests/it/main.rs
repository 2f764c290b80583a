//! Integration tests of the engine at its public boundary. One binary, one
//! module per feature.

mod artifacts;
mod audit;
mod backup;
mod builtins;
mod harness;
mod ownership;
mod permissions;
mod permissions_properties;
mod queue;
mod records;
mod records_differential;
mod records_properties;
mod sandbox_components;
mod sandbox_hostile;
mod sandbox_services;
mod schedule;
mod store_conformance;
