//! End-to-end tests of the whole system, at the boundaries users touch: the
//! guest SDK inside the sandbox, the example handlers, and the `objectos`
//! binary. One binary, one module per feature.

mod api;
mod audit;
mod cli;
mod cli_run;
mod examples;
mod guest_sdk;
mod ownership;
mod readme;
mod schedule;
mod serve;
mod snapshot;
mod support;
