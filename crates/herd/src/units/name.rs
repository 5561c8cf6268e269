//! App names: what may name an app, and how a wanted name is made into one.

/// Whether `name` can name an app: a plain word of letters, digits, `-` and `_` (names
/// appear in commands and key paths), and not `all` (which selects every app).
pub fn is_app_name(name: &str) -> bool {
    !name.is_empty()
        && name != "all"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `wanted` made into an app name: other characters become `-`, an empty name `app`,
/// `all` becomes `all-app`.
pub fn app_name_from(wanted: &str) -> String {
    let name: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    match name.as_str() {
        "" => "app".to_string(),
        "all" => "all-app".to_string(),
        _ => name,
    }
}
