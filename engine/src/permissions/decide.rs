//! Decisions: what a principal may do with an object, its fields and its
//! records, and which engine actions it may perform — each with the grants
//! that allowed it or the reason it was denied.
//!
//! Rules (SPEC section 6): default deny; grants are a union across the
//! principal's profiles and across every set naming the object; a record
//! filter is the OR of the `viewFilters` of every profile granting the
//! action (a granting profile without filters sees every record). A field
//! listed with `visibleTo` (or `editableBy`) in a set is covered by that
//! set's grants only for the profiles listed; it is visible (editable) if
//! some set granting the action covers it. Every rule is a union of grants,
//! so adding a set or a profile never takes access away.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::filter::Filter;
use super::sets::{FieldRule, LoadError, PermissionSet, ProfileRules, load_dir};
use super::template;
use crate::field_path::FieldPath;
use crate::principal::Principal;

/// An action on an object's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read records.
    Read,
    /// Create records.
    Create,
    /// Edit records.
    Edit,
    /// Delete records.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Edit, Action::Delete];

    fn allowed_by(self, rules: &ProfileRules) -> bool {
        match self {
            Action::Read => rules.allow_read,
            Action::Create => rules.allow_create,
            Action::Edit => rules.allow_edit,
            Action::Delete => rules.allow_delete,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Edit => "edit",
            Action::Delete => "delete",
        }
    }
}

/// A set and profile that granted something.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The permission set's name.
    pub set: String,
    /// The profile.
    pub profile: String,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.set, self.profile)
    }
}

/// A decision, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether it is allowed.
    pub allowed: bool,
    /// What allowed it (empty when denied).
    pub grants: Vec<Grant>,
    /// Why, in a sentence: the grants, or what is missing.
    pub reason: String,
}

impl Decision {
    fn unrestricted() -> Self {
        Decision { allowed: true, grants: Vec::new(), reason: "no permission sets restrict this run".into() }
    }

    fn from_grants(grants: Vec<Grant>, denied: impl FnOnce() -> String) -> Self {
        if grants.is_empty() {
            Decision { allowed: false, grants, reason: denied() }
        } else {
            let names: Vec<String> = grants.iter().map(Grant::to_string).collect();
            Decision { allowed: true, reason: format!("granted by {}", names.join(", ")), grants }
        }
    }
}

/// One set's rules for one object, ready to decide with.
struct ObjectRules {
    set: String,
    profiles: BTreeMap<String, CompiledProfile>,
    fields: BTreeMap<FieldPath, FieldRule>,
}

struct CompiledProfile {
    rules: ProfileRules,
    /// The view filter already parsed, when it has no templates.
    fixed: Option<Filter>,
}

/// Every loaded permission set, indexed for decisions.
#[derive(Default)]
pub struct Permissions {
    objects: HashMap<String, Vec<ObjectRules>>,
    /// Per profile: (set, permissions).
    system: HashMap<String, Vec<(String, Vec<String>)>>,
    sets: usize,
    /// Everything is allowed (a local run without permission sets).
    unrestricted: bool,
}

impl Permissions {
    /// No sets: everything is denied.
    pub fn empty() -> Self {
        Self::default()
    }

    /// No restriction at all: every action on every object and field, every
    /// system permission. For `objectos run` without `--permissions`.
    pub fn unrestricted() -> Self {
        Self { unrestricted: true, ..Self::default() }
    }

    /// Whether this is [`Permissions::unrestricted`].
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Indexes `sets` (already checked by [`PermissionSet::parse`]).
    pub fn new(sets: Vec<PermissionSet>) -> Self {
        let mut permissions = Self { sets: sets.len(), ..Self::default() };
        for set in sets {
            if let Some(system) = set.system {
                for (profile, granted) in system.profiles {
                    permissions.system.entry(profile).or_default().push((set.name.clone(), granted));
                }
            }
            if let Some(object) = set.object_name {
                let profiles = set
                    .profiles
                    .into_iter()
                    .map(|(name, rules)| {
                        let fixed = match &rules.view_filters {
                            None => Some(Filter::everything()),
                            Some(filter) if !filter.to_string().contains("{{") => Filter::parse(filter).ok(),
                            Some(_) => None,
                        };
                        (name, CompiledProfile { rules, fixed })
                    })
                    .collect();
                permissions.objects.entry(object).or_default().push(ObjectRules {
                    set: set.name,
                    profiles,
                    fields: set.field_permissions,
                });
            }
        }
        permissions
    }

    /// Loads every set in `dir`.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        Ok(Self::new(load_dir(dir)?))
    }

    /// How many sets are loaded.
    pub fn set_count(&self) -> usize {
        self.sets
    }

    /// The (set, profile, rules) of every profile of `principal` granting `action` on `object`.
    fn granting<'a>(
        &'a self,
        principal: &'a Principal,
        object: &str,
        action: Action,
    ) -> impl Iterator<Item = (&'a ObjectRules, &'a str, &'a CompiledProfile)> + 'a {
        self.objects.get(object).into_iter().flatten().flat_map(move |rules| {
            principal.profiles.iter().filter_map(move |profile| {
                let compiled = rules.profiles.get(profile)?;
                action.allowed_by(&compiled.rules).then_some((rules, profile.as_str(), compiled))
            })
        })
    }

    fn denied(&self, principal: &Principal, object: &str, what: &str) -> String {
        if self.objects.contains_key(object) {
            format!(
                "none of the profiles [{}] of `{}` {what}",
                principal.profiles.join(", "),
                principal.user_id
            )
        } else {
            format!("no permission set covers object `{object}`")
        }
    }

    /// Whether `principal` may perform `action` on `object` at all.
    pub fn object(&self, principal: &Principal, object: &str, action: Action) -> Decision {
        if self.unrestricted {
            return Decision::unrestricted();
        }
        let grants = self.granting(principal, object, action).map(|(r, p, _)| grant(r, p)).collect();
        Decision::from_grants(grants, || {
            self.denied(principal, object, &format!("allows {} on `{object}`", action.as_str()))
        })
    }

    /// The records of `object` that `principal` may `action`: `None` when
    /// the action is denied outright. Several granting profiles' filters
    /// are OR-ed; one without a filter makes it every record.
    pub fn record_filter(&self, principal: &Principal, object: &str, action: Action) -> Option<Filter> {
        if self.unrestricted {
            return Some(Filter::everything());
        }
        let mut any = Vec::new();
        let mut granted = false;
        for (_, profile, compiled) in self.granting(principal, object, action) {
            granted = true;
            let filter = match (&compiled.fixed, &compiled.rules.view_filters) {
                (Some(fixed), _) => fixed.clone(),
                (None, Some(templated)) => template::substitute(templated, principal, profile)
                    .and_then(|json| Filter::parse(&json).ok())
                    // A missing key, or a value of the wrong shape: this profile sees nothing.
                    .unwrap_or_else(Filter::nothing),
                (None, None) => Filter::everything(),
            };
            if filter == Filter::everything() {
                return Some(filter);
            }
            any.push(filter);
        }
        granted.then(|| if any.len() == 1 { any.remove(0) } else { Filter::Or(any) })
    }

    /// Whether `principal` sees `field` of `object`'s records.
    pub fn field_visible(&self, principal: &Principal, object: &str, field: &str) -> Decision {
        self.field(principal, object, field, Action::Read, |rule| rule.visible_to.as_ref())
    }

    /// Whether `principal` may write `field` when it performs `action`
    /// (`Create` or `Edit`).
    pub fn field_editable(
        &self,
        principal: &Principal,
        object: &str,
        field: &str,
        action: Action,
    ) -> Decision {
        self.field(principal, object, field, action, |rule| rule.editable_by.as_ref())
    }

    fn field(
        &self,
        principal: &Principal,
        object: &str,
        field: &str,
        action: Action,
        listed: impl Fn(&FieldRule) -> Option<&Vec<String>>,
    ) -> Decision {
        if self.unrestricted {
            return Decision::unrestricted();
        }
        let covers = |rules: &ObjectRules| match rules.fields.get(field).and_then(&listed) {
            None => true,
            Some(allowed) => principal.profiles.iter().any(|p| allowed.contains(p)),
        };
        let mut grants: Vec<Grant> = self
            .granting(principal, object, action)
            .filter(|(rules, _, _)| covers(rules))
            .map(|(rules, profile, _)| grant(rules, profile))
            .collect();
        grants.dedup();
        Decision::from_grants(grants, || {
            if self.granting(principal, object, action).next().is_some() {
                format!("field `{field}` of `{object}` is restricted to other profiles")
            } else {
                self.denied(principal, object, &format!("allows {} on `{object}`", action.as_str()))
            }
        })
    }

    /// Whether `principal` holds the system permission `permission`.
    pub fn system(&self, principal: &Principal, permission: &str) -> Decision {
        if self.unrestricted {
            return Decision::unrestricted();
        }
        let grants = principal
            .profiles
            .iter()
            .flat_map(|profile| {
                self.system
                    .get(profile)
                    .into_iter()
                    .flatten()
                    .filter(|(_, granted)| granted.iter().any(|g| g == permission))
                    .map(move |(set, _)| Grant { set: set.clone(), profile: profile.clone() })
            })
            .collect();
        Decision::from_grants(grants, || {
            format!(
                "none of the profiles [{}] of `{}` holds `{permission}`",
                principal.profiles.join(", "),
                principal.user_id
            )
        })
    }

    /// The fields of `object` that `principal` may not see: those some set
    /// lists with `visibleTo` and no set granting read lets it see.
    pub fn hidden_fields(&self, principal: &Principal, object: &str) -> Vec<FieldPath> {
        self.restricted(object, |field| !self.field_visible(principal, object, field).allowed)
    }

    /// The fields of `object` that `principal` may not write when it
    /// performs `action` (`Create` or `Edit`).
    pub fn locked_fields(&self, principal: &Principal, object: &str, action: Action) -> Vec<FieldPath> {
        self.restricted(object, |field| !self.field_editable(principal, object, field, action).allowed)
    }

    /// The fields some set lists for `object` that `denied` holds for.
    fn restricted(&self, object: &str, denied: impl Fn(&str) -> bool) -> Vec<FieldPath> {
        let listed: std::collections::BTreeSet<&FieldPath> =
            self.objects.get(object).into_iter().flatten().flat_map(|rules| rules.fields.keys()).collect();
        listed.into_iter().filter(|field| denied(field.as_str())).cloned().collect()
    }

    /// The objects `principal` may perform `action` on, by name (none are
    /// named when unrestricted: every object is allowed).
    pub fn objects_allowing(&self, principal: &Principal, action: Action) -> Vec<String> {
        let mut names: Vec<String> = self
            .objects
            .keys()
            .filter(|object| self.granting(principal, object, action).next().is_some())
            .cloned()
            .collect();
        names.sort();
        names
    }
}

fn grant(rules: &ObjectRules, profile: &str) -> Grant {
    Grant { set: rules.set.clone(), profile: profile.to_string() }
}

/// The permission sets in force, reloadable from their directory while the
/// engine runs: a reload that fails keeps the sets in force.
pub struct PermissionsDir {
    dir: Option<PathBuf>,
    current: RwLock<Arc<Permissions>>,
    /// The directory's files as the last load attempt saw them.
    pub(super) seen: std::sync::Mutex<super::watch::Signature>,
}

impl PermissionsDir {
    /// Loads the sets in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LoadError> {
        let dir = dir.into();
        let seen = super::watch::signature(&dir).into();
        let current = RwLock::new(Arc::new(Permissions::load(&dir)?));
        Ok(Self { dir: Some(dir), current, seen })
    }

    /// No sets yet from a directory that does not exist: everything is
    /// denied until it does and is reloaded.
    pub fn watching_missing(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let seen = super::watch::signature(&dir).into();
        Self { dir: Some(dir), current: RwLock::new(Arc::new(Permissions::empty())), seen }
    }

    /// Sets that come from no directory and never change (tests, local runs).
    pub fn fixed(permissions: Permissions) -> Self {
        Self { dir: None, current: RwLock::new(Arc::new(permissions)), seen: Default::default() }
    }

    /// The directory the sets are read from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The sets in force (a snapshot: a reload does not change it).
    pub fn current(&self) -> Arc<Permissions> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the directory again. On an error the previous sets stay in
    /// force and the error says why. Returns how many sets are in force.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let Some(dir) = &self.dir else { return Ok(self.current().set_count()) };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = super::watch::signature(dir);
        let loaded = Permissions::load(dir)?;
        let count = loaded.set_count();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(count)
    }
}
