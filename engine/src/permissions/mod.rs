//! The permission engine. So far: the record filter language ([`filter`])
//! that permission sets' `viewFilters` and record queries are written in.

pub mod filter;

pub use filter::{Condition, Filter, FilterError};
