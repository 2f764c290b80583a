//! Jobs: what they are ([`model`]) and how their status may change
//! ([`lifecycle`]). Pure data and rules; no storage, no execution.

pub mod lifecycle;
pub mod model;

pub use lifecycle::{EventType, JobEvent, Transition};
pub use model::*;
