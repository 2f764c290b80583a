//! Permission sets as written: YAML files in the original ObjectOS format,
//! one object's rules or one system section per file, loaded from a
//! directory with errors that name the file, the line and the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::template;
use crate::field_path::FieldPath;

/// The engine actions a system permission set can grant.
pub const SYSTEM_PERMISSIONS: &[&str] = &[
    "jobs.read",
    "jobs.read.any",
    "jobs.enqueue",
    "jobs.cancel",
    "jobs.cancel.any",
    "jobs.impersonate",
    "schedules.read",
    "schedules.read.any",
    "schedules.write",
    "schedules.write.any",
    "handlers.read",
    "handlers.upload",
    "records.import",
    "artifacts.read",
    "artifacts.read.any",
    "artifacts.write",
    "audit.read",
    "stats.read",
];

/// One permission set file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionSet {
    /// The set's name.
    pub name: String,
    /// The object its profile rules are for.
    #[serde(default)]
    pub object_name: Option<String>,
    /// Per profile: the actions it allows and the records it sees.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileRules>,
    /// Per field (a path in the grammar of [`crate::field_path`]): who
    /// sees it and who edits it.
    #[serde(default)]
    pub field_permissions: BTreeMap<FieldPath, FieldRule>,
    /// Engine actions per profile.
    #[serde(default)]
    pub system: Option<SystemSection>,
}

/// What one profile may do with an object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileRules {
    /// Read records.
    #[serde(default)]
    pub allow_read: bool,
    /// Create records.
    #[serde(default)]
    pub allow_create: bool,
    /// Edit records.
    #[serde(default)]
    pub allow_edit: bool,
    /// Delete records.
    #[serde(default)]
    pub allow_delete: bool,
    /// The records this profile's grants reach (all when absent), with
    /// `{{ userId }}`, `{{ profile }}` and `{{ user.<key> }}` templates.
    #[serde(default)]
    pub view_filters: Option<Value>,
}

/// Who sees and who edits one field. An omitted list adds no restriction.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldRule {
    /// Profiles that see the field.
    #[serde(default)]
    pub visible_to: Option<Vec<String>>,
    /// Profiles that may write it.
    #[serde(default)]
    pub editable_by: Option<Vec<String>>,
}

/// A system permission set's grants.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSection {
    /// Per profile, the engine actions it may perform.
    pub profiles: BTreeMap<String, Vec<String>>,
}

/// A permission set that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The 1-based line of the first line at or after `from` (0-based) that
/// holds `key` as a YAML key, if any.
fn line_of(text: &str, from: usize, key: &str) -> Option<usize> {
    let patterns = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")];
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, line)| {
            let trimmed = line.trim_start().trim_start_matches(['{', ' ', '-']);
            patterns.iter().any(|p| trimmed.starts_with(p.as_str()) || line.contains(&format!(" {p}")))
        })
        .map(|(i, _)| i + 1)
}

impl PermissionSet {
    /// Parses and checks one file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, LoadError> {
        let fail =
            |line: Option<usize>, message: String| LoadError { path: path.to_path_buf(), line, message };
        let set: PermissionSet = serde_norway::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            // The location is given separately; keep the message short.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            fail(line, message)
        })?;
        match (&set.object_name, &set.system) {
            (None, None) => {
                return Err(fail(
                    None,
                    "a permission set needs `objectName` (with `profiles`) or `system`".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(fail(
                    line_of(text, 0, "system"),
                    "a set has either `objectName` or `system`, not both".into(),
                ));
            }
            (None, Some(_)) if !set.profiles.is_empty() || !set.field_permissions.is_empty() => {
                return Err(fail(
                    line_of(text, 0, "profiles"),
                    "a system set has no object: move `profiles` under `system` or add `objectName`".into(),
                ));
            }
            _ => {}
        }
        for (profile, rules) in &set.profiles {
            if let Some(filter) = &rules.view_filters {
                template::check(filter).map_err(|message| {
                    let at = line_of(text, 0, profile).unwrap_or(1);
                    fail(
                        line_of(text, at - 1, "viewFilters"),
                        format!("profiles.{profile}.viewFilters: {message}"),
                    )
                })?;
            }
        }
        if let Some(system) = &set.system {
            for (profile, permissions) in &system.profiles {
                if let Some(unknown) = permissions.iter().find(|p| !SYSTEM_PERMISSIONS.contains(&p.as_str()))
                {
                    return Err(fail(
                        line_of(text, 0, unknown.as_str()).or_else(|| line_of(text, 0, profile)),
                        format!(
                            "system.profiles.{profile}: `{unknown}` is not a system permission ({})",
                            SYSTEM_PERMISSIONS.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(set)
    }
}

/// Whether `path` names a permission set file (`*.yaml` or `*.yml`).
pub fn is_set_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// The largest permission set file read; a larger one is skipped.
pub const MAX_SET_BYTES: u64 = 1 << 20;

/// Every `*.yaml` and `*.yml` file of `dir`, parsed, in file-name order.
///
/// What no operator writes as a set is skipped with a warning rather than
/// read: anything but a regular file (a FIFO would block the read for
/// ever), a file over [`MAX_SET_BYTES`], and YAML nested past the parser's
/// depth limit. A leading byte-order mark is ignored. Reading blocks: call
/// this off the async runtime.
pub fn load_dir(dir: &Path) -> Result<Vec<PermissionSet>, LoadError> {
    let fail = |path: &Path, message: String| LoadError { path: path.to_path_buf(), line: None, message };
    let entries = std::fs::read_dir(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|entry| entry.ok().map(|e| e.path())).filter(|p| is_set_file(p)).collect();
    paths.sort();
    let mut sets = Vec::with_capacity(paths.len());
    for path in paths {
        let skip = |why: &str| tracing::warn!(file = %path.display(), "permission set skipped: {why}");
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                skip("not a regular file");
                continue;
            }
            Ok(meta) if meta.len() > MAX_SET_BYTES => {
                skip(&format!("larger than {MAX_SET_BYTES} bytes"));
                continue;
            }
            Ok(_) => {}
            Err(e) => return Err(fail(&path, e.to_string())),
        }
        let text = std::fs::read_to_string(&path).map_err(|e| fail(&path, e.to_string()))?;
        match PermissionSet::parse(&path, text.strip_prefix('\u{feff}').unwrap_or(&text)) {
            Err(error) if error.message.contains("recursion limit exceeded") => {
                skip("nested deeper than the YAML parser allows");
            }
            parsed => sets.push(parsed?),
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PermissionSet, String> {
        PermissionSet::parse(Path::new("perms/contacts.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_original_format_loads() {
        let set = parse(
            "name: contact-permissions
objectName: contacts
profiles:
  sales:   { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: false,
             viewFilters: { owner: \"{{ userId }}\" } }
  hr:      { allowRead: true, viewFilters: { level: { $lte: \"{{ user.level }}\" } } }
fieldPermissions:
  salary: { visibleTo: [admin, hr], editableBy: [admin] }
",
        )
        .unwrap();
        assert_eq!(set.object_name.as_deref(), Some("contacts"));
        assert!(set.profiles["sales"].allow_edit && !set.profiles["sales"].allow_delete);
        assert_eq!(set.field_permissions["salary"].editable_by, Some(vec!["admin".to_string()]));
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let unknown = parse(
            "name: x\nobjectName: contacts\nprofiles:\n  sales:\n    allowRead: true\n    allowWrite: true\n",
        );
        let unknown = unknown.unwrap_err();
        assert!(unknown.starts_with("perms/contacts.yaml:6: "), "{unknown}");
        assert!(unknown.contains("unknown field `allowWrite`"), "{unknown}");

        let wrong_type =
            parse("name: x\nobjectName: contacts\nprofiles:\n  sales: { allowRead: \"yes\" }\n").unwrap_err();
        assert!(wrong_type.starts_with("perms/contacts.yaml:4: "), "{wrong_type}");

        let bad_filter = parse(
            "name: x\nobjectName: contacts\nprofiles:\n  sales:\n    allowRead: true\n    viewFilters:\n      owner: { $eqq: 1 }\n",
        )
        .unwrap_err();
        assert!(
            bad_filter.starts_with("perms/contacts.yaml:6: profiles.sales.viewFilters: "),
            "{bad_filter}"
        );
        assert!(bad_filter.contains("`$eqq` is not an operator"), "{bad_filter}");

        let bad_system =
            parse("name: ops\nsystem:\n  profiles:\n    ops: [jobs.read, jobs.enqueu]\n").unwrap_err();
        assert!(bad_system.starts_with("perms/contacts.yaml:4: "), "{bad_system}");
        assert!(bad_system.contains("`jobs.enqueu` is not a system permission"));

        let bad_field = parse(
            "name: x\nobjectName: contacts\nfieldPermissions:\n  \"sal\\\\u0061ry\": { visibleTo: [admin] }\n",
        )
        .unwrap_err();
        assert!(bad_field.starts_with("perms/contacts.yaml:4"), "{bad_field}");
        assert!(bad_field.contains("is not a field path"), "{bad_field}");

        assert!(parse("name: x\n").unwrap_err().contains("needs `objectName`"));
        assert!(parse("name: x\nobjectName: a\nsystem: {profiles: {}}\n").unwrap_err().contains("not both"));
    }
}
