//! Field paths: the one grammar by which filters, sorts, projections,
//! writes and field permissions name a field of a record, parsed once into
//! a canonical form that every check and every backend's query works on.
//!
//! ```text
//! path    = segment *( "." segment )       ; 1 to 16 segments
//! segment = 1 to 128 bytes of UTF-8, not starting with "$", holding no
//!           ".", no '"', no "\" and no control character
//! ```
//!
//! The grammar has no escapes and no quoting, so a path has exactly one
//! spelling: two paths name the same field if and only if their texts are
//! equal. That is what makes a field-level check sound. A backend whose
//! own path language has escapes (SQLite's JSON paths read `\u0061` as `a`)
//! could otherwise resolve a spelling the check did not recognise to a
//! hidden field; here no such spelling gets past the parser, and anything
//! outside the grammar is refused naming it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most segments a path may have.
pub const MAX_SEGMENTS: usize = 16;
/// The most bytes one segment may have.
pub const MAX_SEGMENT_BYTES: usize = 128;

/// A field path in canonical form (see the module doc for the grammar).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldPath(String);

/// Why a text is not a field path, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a field path: {reason}", .text.escape_debug())]
pub struct FieldPathError {
    /// The text refused.
    pub text: String,
    /// What about it breaks the grammar.
    pub reason: String,
}

fn segment_error(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return Some("a segment is empty".into());
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Some(format!("a segment is longer than {MAX_SEGMENT_BYTES} bytes"));
    }
    if segment.starts_with('$') {
        return Some("a segment may not start with `$`".into());
    }
    segment
        .chars()
        .find(|c| matches!(c, '"' | '\\') || c.is_control())
        .map(|c| format!("{} may not appear in a field name", c.escape_debug().collect::<String>()))
}

impl FieldPath {
    /// Parses `text` as a path of one or more segments.
    pub fn parse(text: &str) -> Result<Self, FieldPathError> {
        let refuse = |reason: String| FieldPathError { text: text.to_string(), reason };
        let segments = text.split('.').count();
        if segments > MAX_SEGMENTS {
            return Err(refuse(format!("it has {segments} segments; at most {MAX_SEGMENTS}")));
        }
        match text.split('.').find_map(segment_error) {
            Some(reason) => Err(refuse(reason)),
            None => Ok(Self(text.to_string())),
        }
    }

    /// Parses `text` as a top-level field name: one segment.
    pub fn name(text: &str) -> Result<Self, FieldPathError> {
        if text.contains('.') {
            let reason = "a field name is one segment, without `.`".into();
            return Err(FieldPathError { text: text.to_string(), reason });
        }
        Self::parse(text)
    }

    /// The canonical text, segments joined by `.`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether the path is one segment (a top-level field).
    pub fn is_name(&self) -> bool {
        !self.0.contains('.')
    }

    /// Whether reading or writing `self` reveals or changes `other`: one is
    /// the other, or lies inside it.
    pub fn touches(&self, other: &FieldPath) -> bool {
        let inside =
            |a: &str, b: &str| a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'.';
        self.0 == other.0 || inside(&self.0, &other.0) || inside(&other.0, &self.0)
    }

    /// The value at this path of `record`, if every step exists.
    pub fn lookup<'a>(&self, record: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        self.segments().try_fold(record, |value, key| value.as_object()?.get(key))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FieldPath {
    type Error = FieldPathError;
    fn try_from(text: String) -> Result<Self, FieldPathError> {
        Self::parse(&text)
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> String {
        path.0
    }
}

// Equality, order and hash are the text's, so a map keyed by paths can be
// searched by `&str`.
impl std::borrow::Borrow<str> for FieldPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FieldPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_accepts_names_and_dotted_paths() {
        for good in ["amount_1", "address.city", "é", "名前.x", "a b", "Ünïcode.ß", "a-b:c"] {
            assert_eq!(FieldPath::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(FieldPath::parse("a.b.c").unwrap().segments().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn anything_outside_the_grammar_is_refused_naming_it() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "$where",
            "a.$b",
            "a\"b",
            "sal\\u0061ry",
            "tab\there",
            "nul\0",
            "\u{7f}",
            "line\nbreak",
        ] {
            let error = FieldPath::parse(bad).unwrap_err();
            assert_eq!(error.text, bad);
            assert!(error.to_string().contains("is not a field path"), "{bad:?}: {error}");
        }
        assert!(FieldPath::parse(&"a".repeat(129)).is_err());
        assert!(FieldPath::parse(&vec!["a"; 17].join(".")).is_err());
        assert!(FieldPath::parse(&vec!["a"; 16].join(".")).is_ok());
        assert!(FieldPath::name("a.b").is_err());
    }

    #[test]
    fn touching_is_containment_either_way() {
        let p = |s| FieldPath::parse(s).unwrap();
        assert!(p("salary").touches(&p("salary")));
        assert!(p("salary.base").touches(&p("salary")));
        assert!(p("address").touches(&p("address.city")));
        assert!(!p("salaryBand").touches(&p("salary")));
        assert!(!p("address.zip").touches(&p("address.city")));
    }

    #[test]
    fn it_round_trips_through_serde_and_refuses_bad_text() {
        let path: FieldPath = serde_json::from_str("\"a.b\"").unwrap();
        assert_eq!(serde_json::to_string(&path).unwrap(), "\"a.b\"");
        let error = serde_json::from_str::<FieldPath>(r#""sal\\u0061ry""#).unwrap_err();
        assert!(error.to_string().contains("is not a field path"), "{error}");
    }
}
