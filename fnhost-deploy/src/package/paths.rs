//! The path rules every stored entry obeys: relative, `/`-separated, no
//! `..`; a symbolic link must stay inside its tree.

/// Checks a manifest path: relative, `/`-separated, no empty, `.` or `..`
/// component, no NUL, no backslash.
pub fn check_relative_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains('\0') {
        return Err("NUL in path");
    }
    if path.contains('\\') {
        return Err("backslash in path");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component"),
            "." => return Err("`.` component"),
            ".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Normalises a zip entry name into a safe relative path (`\` counts as a
/// separator, `.` and empty components are dropped), or says why it is
/// refused.
pub fn safe_entry_path(name: &str) -> std::result::Result<String, String> {
    if name.contains('\0') {
        return Err("the name holds a NUL byte".into());
    }
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err("absolute path".into());
    }
    let b = unified.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err("absolute path (drive letter)".into());
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` leaves the app folder".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink `target` found at `link` (both relative to the tree
/// root) and says whether it stays inside the tree.
pub(crate) fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut stack: Vec<&str> = link.split('/').collect();
    stack.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            p => stack.push(p),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        assert_eq!(safe_entry_path("a/b.txt"), Ok("a/b.txt".to_owned()));
        assert_eq!(safe_entry_path("./a//b"), Ok("a/b".to_owned()));
        assert_eq!(safe_entry_path("a\\b.txt"), Ok("a/b.txt".to_owned()));
        for bad in ["/etc/passwd", "a/../../x", "..\\x", "C:/x", "", "./"] {
            assert!(safe_entry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_must_stay_in_the_tree() {
        assert!(link_stays_inside("a/b", "c"));
        assert!(link_stays_inside("a/b", "../c"));
        assert!(!link_stays_inside("a/b", "../../c"));
        assert!(!link_stays_inside("b", "/etc/passwd"));
    }
}
