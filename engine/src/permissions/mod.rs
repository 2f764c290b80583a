//! The permission engine: permission sets as written ([`sets`]), the
//! record filter language ([`filter`]) and the templates inside filters
//! ([`template`]).

pub mod filter;
pub mod sets;
pub mod template;

pub use filter::{Condition, Filter, FilterError};
pub use sets::{LoadError, PermissionSet, load_dir};
