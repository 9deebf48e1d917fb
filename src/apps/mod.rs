//! Built-in applications, one file each, mounted by name with `--mount`.

/// Names of the built-in apps this build serves.
pub const NAMES: &[&str] = &["hello", "echo", "env", "sleep", "ping"];

/// Whether `name` is a built-in app of this build.
pub fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}
