//! The permission engine: permission sets as written ([`sets`]), the
//! record filter language ([`filter`]), the templates inside filters
//! ([`template`]), and the decisions made from them ([`decide`]).

pub mod capabilities;
pub mod decide;
pub mod filter;
pub mod sets;
pub mod template;
mod watch;

pub use decide::{Action, Decision, Grant, Permissions, PermissionsDir};
pub use filter::{Condition, Filter, FilterError};
pub use sets::{LoadError, PermissionSet, load_dir};
