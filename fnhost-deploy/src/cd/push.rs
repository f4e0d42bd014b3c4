//! What a push webhook says: the payloads of GitHub, GitLab, Bitbucket,
//! Azure Repos and a generic `{"repository":{"url"},"ref"}` one, read into
//! the refs pushed and the repository's URLs, and repository URLs reduced
//! for comparison with the one a slot follows. The management endpoint's
//! `POST /deploy` answers webhooks with it.

use serde_json::Value;

/// What a payload says was pushed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Push {
    /// Which sender: `github`, `gitlab`, `bitbucket`, `azure-repos`, `generic`.
    pub provider: &'static str,
    /// The refs updated (`refs/heads/main`), with their new commit when
    /// known, and whether the ref was deleted.
    pub refs: Vec<(String, Option<String>, bool)>,
    /// The repository's URLs as the payload gives them.
    pub urls: Vec<String>,
}

/// Why a payload is not a push to act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotPush {
    /// Another kind of event (`ping`, `pull_request`, ...): answered 200.
    Event(String),
    /// Not a payload we can read: 400.
    Invalid(String),
}

fn strs(v: &Value, pointers: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pointers {
        if let Some(s) = v.pointer(p).and_then(Value::as_str)
            && !s.is_empty()
            && !out.iter().any(|o| o == s)
        {
            out.push(s.to_string());
        }
    }
    out
}

fn sha(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.bytes().all(|b| b == b'0'))
        .map(str::to_string)
}

/// Whether a commit field is all zeros (git's "deleted").
fn zero(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b == b'0'))
}

/// Reads a payload, by its headers first and its shape otherwise.
/// `header` looks a request header up by its name (lower case).
pub(crate) fn parse(
    header: impl Fn(&str) -> Option<String>,
    body: &Value,
) -> Result<Push, NotPush> {
    if let Some(event) = header("x-github-event") {
        if event != "push" {
            return Err(NotPush::Event(format!("GitHub event {event:?}")));
        }
        return github(body);
    }
    if let Some(event) = header("x-gitlab-event") {
        if event != "Push Hook" && body.get("object_kind").and_then(Value::as_str) != Some("push") {
            return Err(NotPush::Event(format!("GitLab event {event:?}")));
        }
        return gitlab(body);
    }
    if let Some(event) = header("x-event-key") {
        if event != "repo:push" {
            return Err(NotPush::Event(format!("Bitbucket event {event:?}")));
        }
        return bitbucket(body);
    }
    if let Some(event) = body.get("eventType").and_then(Value::as_str) {
        if event != "git.push" {
            return Err(NotPush::Event(format!("Azure Repos event {event:?}")));
        }
        return azure(body);
    }
    if body.get("object_kind").is_some() {
        return gitlab(body);
    }
    if body.pointer("/push/changes").is_some() {
        return bitbucket(body);
    }
    if body.get("after").is_some() && body.pointer("/repository/clone_url").is_some() {
        return github(body);
    }
    generic(body)
}

fn need_ref(body: &Value, provider: &str) -> Result<String, NotPush> {
    body.get("ref")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| NotPush::Invalid(format!("a {provider} push payload without \"ref\"")))
}

fn github(body: &Value) -> Result<Push, NotPush> {
    let r = need_ref(body, "GitHub")?;
    let deleted = body.get("deleted").and_then(Value::as_bool) == Some(true);
    Ok(Push {
        provider: "github",
        refs: vec![(r, sha(body, "/after"), deleted || zero(body, "/after"))],
        urls: strs(
            body,
            &[
                "/repository/clone_url",
                "/repository/url",
                "/repository/git_url",
                "/repository/ssh_url",
                "/repository/html_url",
            ],
        ),
    })
}

fn gitlab(body: &Value) -> Result<Push, NotPush> {
    let r = need_ref(body, "GitLab")?;
    let commit = sha(body, "/checkout_sha").or_else(|| sha(body, "/after"));
    Ok(Push {
        provider: "gitlab",
        refs: vec![(r, commit, zero(body, "/after"))],
        urls: strs(
            body,
            &[
                "/repository/git_http_url",
                "/project/git_http_url",
                "/repository/git_ssh_url",
                "/project/git_ssh_url",
                "/repository/homepage",
                "/project/web_url",
            ],
        ),
    })
}

fn bitbucket(body: &Value) -> Result<Push, NotPush> {
    let changes = body
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .ok_or_else(|| NotPush::Invalid("a Bitbucket push without push.changes".into()))?;
    let mut refs = Vec::new();
    for c in changes {
        // `new` is null for a deleted branch: the old name then.
        let (side, alive) = match c.get("new").filter(|v| !v.is_null()) {
            Some(n) => (n, true),
            None => match c.get("old").filter(|v| !v.is_null()) {
                Some(o) => (o, false),
                None => continue,
            },
        };
        let Some(name) = side.get("name").and_then(Value::as_str) else {
            continue;
        };
        let full = match side.get("type").and_then(Value::as_str) {
            Some("tag") | Some("annotated_tag") => format!("refs/tags/{name}"),
            _ => format!("refs/heads/{name}"),
        };
        refs.push((full, sha(side, "/target/hash").filter(|_| alive), !alive));
    }
    let mut urls = strs(body, &["/repository/links/html/href"]);
    if let Some(full) = body
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
    {
        urls.push(format!("https://bitbucket.org/{full}"));
    }
    Ok(Push {
        provider: "bitbucket",
        refs,
        urls,
    })
}

fn azure(body: &Value) -> Result<Push, NotPush> {
    let updates = body
        .pointer("/resource/refUpdates")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            NotPush::Invalid("an Azure Repos push without resource.refUpdates".into())
        })?;
    let refs = updates
        .iter()
        .filter_map(|u| {
            let name = u.get("name").and_then(Value::as_str)?;
            Some((
                name.to_string(),
                sha(u, "/newObjectId"),
                zero(u, "/newObjectId"),
            ))
        })
        .collect();
    Ok(Push {
        provider: "azure-repos",
        refs,
        urls: strs(
            body,
            &["/resource/repository/remoteUrl", "/resource/repository/url"],
        ),
    })
}

fn generic(body: &Value) -> Result<Push, NotPush> {
    let r = body.get("ref").and_then(Value::as_str).ok_or_else(|| {
        NotPush::Invalid(
            "not a push payload this endpoint knows (GitHub, GitLab, Bitbucket, Azure Repos, or {\"repository\":{\"url\":...},\"ref\":\"refs/heads/BRANCH\"})"
                .into(),
        )
    })?;
    Ok(Push {
        provider: "generic",
        refs: vec![(
            r.to_string(),
            sha(body, "/after").or_else(|| sha(body, "/commit")),
            zero(body, "/after"),
        )],
        urls: strs(body, &["/repository/url", "/repository/clone_url"]),
    })
}

/// A repository URL reduced for comparison: no scheme, no user, the host
/// in lower case, no trailing `/` nor `.git`; `git@host:path` as
/// `host/path`; `file:///p` and `/p` alike.
pub(crate) fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let (rest, had_scheme) = match url.find("://") {
        Some(i) => (&url[i + 3..], true),
        None => (url, false),
    };
    let mut s = if had_scheme || rest.starts_with('/') {
        // authority/path (file:///p: empty authority).
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let host = auth.rsplit('@').next().unwrap_or(auth).to_ascii_lowercase();
        // Default ports say nothing.
        let host = host
            .strip_suffix(":443")
            .or_else(|| host.strip_suffix(":80"))
            .unwrap_or(&host)
            .to_string();
        format!("{host}{path}")
    } else if let Some((auth, path)) = rest.split_once(':') {
        // scp-like: git@github.com:org/repo.git
        let host = auth.rsplit('@').next().unwrap_or(auth).to_ascii_lowercase();
        format!("{host}/{}", path.trim_start_matches('/'))
    } else {
        rest.to_string()
    };
    loop {
        let before = s.len();
        while s.ends_with('/') {
            s.pop();
        }
        if let Some(t) = s.strip_suffix(".git") {
            s = t.to_string();
        }
        if s.len() == before {
            break;
        }
    }
    s
}

/// A branch name from a ref (`refs/heads/main` → `main`).
pub(crate) fn branch_of(r: &str) -> &str {
    r.strip_prefix("refs/heads/").unwrap_or(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise() {
        let n = normalize_url;
        assert_eq!(n("HTTPS://GitHub.com/Org/Repo.git/"), "github.com/Org/Repo");
        assert_eq!(n("https://github.com/Org/Repo"), "github.com/Org/Repo");
        assert_eq!(n("git@github.com:Org/Repo.git"), "github.com/Org/Repo");
        assert_eq!(
            n("https://u:p@github.com:443/Org/Repo"),
            "github.com/Org/Repo"
        );
        assert_eq!(n("file:///srv/repo.git"), "/srv/repo");
        assert_eq!(n("/srv/repo.git/"), "/srv/repo");
        assert_ne!(
            n("https://github.com/Org/Other"),
            n("https://github.com/Org/Repo")
        );
    }
}
