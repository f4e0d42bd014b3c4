//! Git sources through libgit2: local paths are read in place, remote
//! repositories are fetched incrementally into one bare cache per URL.
//!
//! Long (about 870 lines) because libgit2's fetch, credentials, host-key
//! checks and the incremental tree update are one provider; the last 35
//! lines are tests.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, FetchPrune, ObjectType, Oid, RemoteCallbacks, Repository,
};

use super::{CacheLocks, SourceError, SourceProvider, SourceSnapshot, SourceSpec, other_error};

/// Submodules nested deeper than this are an error (a cycle, most likely).
const MAX_SUBMODULE_DEPTH: usize = 8;

/// Follows a branch or ref of a git repository.
///
/// `SourceSpec::location` is a local repository path (bare or not, read in
/// place), or a URL: `file://`, `git://`, `http://`, `https://`, `ssh://` or
/// scp-like `user@host:path`. A URL is fetched into a bare cache repository
/// under the cache folder given to [`GitSource::new`] (one per URL, fetched
/// incrementally: never a fresh clone per sync).
///
/// `SourceSpec::reference` is a branch (default `main`, falling back to
/// `master` with a note in the snapshot), a tag, a commit id, or any
/// revision git understands.
///
/// Options (secrets are never in the spec, only where to find them):
///
/// | option | meaning |
/// | --- | --- |
/// | `username` | user for HTTP(S) or SSH |
/// | `password_env`, `password_file` | the environment variable, or the file (first line), holding the password or token |
/// | `ssh_key` | a private key file for SSH (without it: the SSH agent) |
/// | `ssh_passphrase_env`, `ssh_passphrase_file` | the key's passphrase |
/// | `ssh_host_key` | the server's host key fingerprint, `SHA256:…` as `ssh-keygen -lf` prints it (without it: `~/.ssh/known_hosts`) |
/// | `submodules` | `false` to leave submodules out (default: fetched recursively) |
#[derive(Debug)]
pub struct GitSource {
    cache_dir: Option<PathBuf>,
    locks: CacheLocks,
    local_only: bool,
}

impl GitSource {
    /// A provider keeping its cache repositories under `cache_dir` (made
    /// when first needed).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        GitSource {
            cache_dir: Some(cache_dir.into()),
            locks: CacheLocks::default(),
            local_only: false,
        }
    }

    /// A provider for local repository paths only (the built-in repository).
    pub(super) fn local_only() -> Self {
        GitSource {
            cache_dir: None,
            locks: CacheLocks::default(),
            local_only: true,
        }
    }

    fn provider(&self) -> &'static str {
        if self.local_only { "local-git" } else { "git" }
    }

    /// Opens the repository to read `spec` from, fetching into its cache
    /// first when it is remote.
    fn open(&self, spec: &SourceSpec, location: &str) -> Result<Repository, SourceError> {
        if location.trim().is_empty() {
            return Err(SourceError::NotFound {
                provider: self.provider().to_owned(),
                what: "a repository (the location is empty)".to_owned(),
                hint: Some("set the repository path or URL".to_owned()),
            });
        }
        if !is_url(location) {
            return self.open_local(location);
        }
        if self.local_only {
            return Err(SourceError::other(
                self.provider(),
                format!("{location} is not a local repository path"),
            ));
        }
        let Some(cache_dir) = &self.cache_dir else {
            return Err(SourceError::other(self.provider(), "no cache folder"));
        };
        let cache = cache_dir.join(super::cache_name(location, ".git"));
        let lock = self.locks.for_path(&cache);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let repo = match Repository::open_bare(&cache) {
            Ok(repo) => repo,
            Err(_) => {
                fs::create_dir_all(cache_dir).map_err(|e| {
                    other_error(
                        self.provider(),
                        format!("cannot create the cache folder {}", cache_dir.display()),
                        e,
                    )
                })?;
                Repository::init_bare(&cache).map_err(|e| {
                    other_error(
                        self.provider(),
                        format!("cannot create the cache {}", cache.display()),
                        e,
                    )
                })?
            }
        };
        self.fetch_into(&repo, spec, location, &[])?;
        Ok(repo)
    }

    fn open_local(&self, location: &str) -> Result<Repository, SourceError> {
        let path = Path::new(location);
        if !path.exists() {
            return Err(SourceError::NotFound {
                provider: self.provider().to_owned(),
                what: format!("the repository {location}"),
                hint: Some("check the path".to_owned()),
            });
        }
        Repository::open(path).map_err(|e| SourceError::NotFound {
            provider: self.provider().to_owned(),
            what: format!("a git repository at {location} ({})", e.message()),
            hint: None,
        })
    }

    /// Fetches every branch and tag of `url` into `repo` (incremental,
    /// pruning deleted branches), plus `extra` refspecs.
    fn fetch_into(
        &self,
        repo: &Repository,
        spec: &SourceSpec,
        url: &str,
        extra: &[String],
    ) -> Result<(), SourceError> {
        let provider = self.provider();
        let creds = Credentials::from_spec(provider, spec)?;
        let refused: RefCell<Option<String>> = RefCell::new(None);
        // The fingerprint of an SSH host key left to the known_hosts check.
        let unknown_host: RefCell<Option<String>> = RefCell::new(None);
        let pinned = spec
            .options
            .get("ssh_host_key")
            .map(|k| k.trim().to_owned());
        let mut attempts = 0u32;
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(|_url, url_user, allowed| {
            let user = creds
                .username
                .as_deref()
                .or(url_user)
                .unwrap_or("git")
                .to_owned();
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(&user);
            }
            attempts += 1;
            if attempts > 1 {
                *refused.borrow_mut() = Some("the credentials were refused".to_owned());
                return Err(git2::Error::from_str("credentials refused"));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(password) = &creds.password
            {
                return Cred::userpass_plaintext(&user, password);
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                return match &creds.ssh_key {
                    Some(key) => Cred::ssh_key(&user, None, key, creds.ssh_passphrase.as_deref()),
                    None => Cred::ssh_key_from_agent(&user),
                };
            }
            *refused.borrow_mut() = Some(
                "the server asks for credentials and none are configured (options username and password_env or password_file, or ssh_key)"
                    .to_owned(),
            );
            Err(git2::Error::from_str("no credentials"))
        });
        // SSH host keys: the spec's pinned fingerprint, else libgit2's
        // check against ~/.ssh/known_hosts. HTTPS: the system's roots.
        callbacks.certificate_check(|cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let presented = hostkey.hash_sha256().map(|h| {
                use base64::Engine as _;
                format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
                )
            });
            match (&pinned, presented) {
                (Some(want), Some(got)) if *want == got => Ok(CertificateCheckStatus::CertificateOk),
                (Some(want), got) => {
                    *refused.borrow_mut() = Some(format!(
                        "the host key of {host} is {}, not {want} (option ssh_host_key): if the server's key really changed, set the new one",
                        got.as_deref().unwrap_or("not a SHA256 key")
                    ));
                    Err(git2::Error::from_str("host key mismatch"))
                }
                (None, got) => {
                    *unknown_host.borrow_mut() = got;
                    Ok(CertificateCheckStatus::CertificatePassthrough)
                }
            }
        });
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks)
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::All);
        let mut refspecs = vec![
            "+refs/heads/*:refs/heads/*".to_owned(),
            "+refs/tags/*:refs/tags/*".to_owned(),
        ];
        refspecs.extend(extra.iter().cloned());
        let outcome = repo
            .remote_anonymous(url)
            .and_then(|mut remote| remote.fetch(&refspecs, Some(&mut options), None));
        drop(options);
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if e.message().contains("hostkey") && refused.borrow().is_none() => {
                let fingerprint = unknown_host.into_inner();
                Err(SourceError::Auth {
                    provider: provider.to_owned(),
                    message: format!(
                        "{}: the server's host key{} is not in ~/.ssh/known_hosts: check it with the server's owner, then add it (ssh-keyscan) or pin it (option ssh_host_key, `fnhost source set --ssh-host-key`)",
                        redact(url),
                        fingerprint.map(|f| format!(" {f}")).unwrap_or_default()
                    ),
                })
            }
            Err(e) => Err(classify(provider, url, e, refused.into_inner())),
        }
    }

    /// The commit `spec` names in `repo`, with notes.
    fn resolve(
        &self,
        repo: &Repository,
        spec: &SourceSpec,
    ) -> Result<(Oid, Vec<String>), SourceError> {
        let provider = self.provider();
        let branches = branch_names(repo);
        let nothing_pushed = |branch: &str| SourceError::Empty {
            provider: provider.to_owned(),
            message: if branches.is_empty() {
                format!("nothing has been pushed to branch {branch} yet")
            } else {
                format!(
                    "nothing has been pushed to branch {branch} yet (branches pushed: {})",
                    branches.join(", ")
                )
            },
        };
        let reference = spec.reference.as_deref().filter(|r| !r.trim().is_empty());
        if branches.is_empty() && repo.tag_names(None).map(|t| t.is_empty()).unwrap_or(true) {
            if self.local_only {
                return Err(nothing_pushed(reference.unwrap_or("main")));
            }
            return Err(SourceError::Empty {
                provider: provider.to_owned(),
                message: format!(
                    "the repository {} is empty: it has no branch yet",
                    spec.location
                ),
            });
        }
        let missing = |what: String| {
            if self.local_only {
                return nothing_pushed(reference.unwrap_or("main"));
            }
            SourceError::NotFound {
                provider: provider.to_owned(),
                what,
                hint: Some(if branches.is_empty() {
                    "the repository has no branch".to_owned()
                } else {
                    format!("branches: {}", branches.join(", "))
                }),
            }
        };
        match reference {
            None => {
                if let Some(oid) = branch_commit(repo, "main") {
                    return Ok((oid, Vec::new()));
                }
                if let Some(oid) = branch_commit(repo, "master") {
                    return Ok((oid, vec!["branch main not found, using master".to_owned()]));
                }
                Err(missing("branch main (nor master)".to_owned()))
            }
            Some(name) => {
                if let Some(oid) = branch_commit(repo, name) {
                    return Ok((oid, Vec::new()));
                }
                let by_tag = repo
                    .find_reference(&format!("refs/tags/{name}"))
                    .and_then(|r| r.peel_to_commit());
                if let Ok(commit) = by_tag {
                    return Ok((commit.id(), Vec::new()));
                }
                if !self.local_only
                    && let Ok(commit) = repo.revparse_single(name).and_then(|o| o.peel_to_commit())
                {
                    return Ok((commit.id(), Vec::new()));
                }
                Err(missing(format!("branch or ref {name}")))
            }
        }
    }

    /// Writes the tree of `commit` of `repo` into `dir`, with submodules.
    fn write_commit(
        &self,
        repo: &Repository,
        spec: &SourceSpec,
        location: &str,
        commit: Oid,
        dir: &Path,
        depth: usize,
    ) -> Result<(), SourceError> {
        let provider = self.provider();
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| other_error(provider, format!("cannot read commit {commit}"), e))?;
        let submodules = if spec.options.get("submodules").map(String::as_str) == Some("false") {
            None
        } else {
            Some(gitmodules(repo, &tree))
        };
        let mut writer = TreeWriter {
            source: self,
            spec,
            location,
            repo,
            submodules,
            depth,
        };
        writer.write(&tree, dir, "")
    }
}

impl SourceProvider for GitSource {
    fn name(&self) -> &str {
        self.provider()
    }

    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
        let repo = self.open(spec, &spec.location)?;
        Ok(self.resolve(&repo, spec)?.0.to_string())
    }

    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
        let repo = self.open(spec, &spec.location)?;
        let (oid, notes) = self.resolve(&repo, spec)?;
        self.write_commit(&repo, spec, &spec.location, oid, into, 0)?;
        self.describe(&repo, oid, notes)
    }

    /// Writes only the difference between the previous commit's tree and
    /// the new one; the whole tree when the previous commit is unknown or
    /// the difference involves submodules.
    fn update(
        &self,
        spec: &SourceSpec,
        dir: &Path,
        previous: &str,
    ) -> Result<SourceSnapshot, SourceError> {
        let repo = self.open(spec, &spec.location)?;
        let (oid, notes) = self.resolve(&repo, spec)?;
        let done = match Oid::from_str(previous) {
            Ok(from) if dir.is_dir() => self.write_difference(&repo, from, oid, dir)?,
            _ => false,
        };
        if !done {
            fnhost_core::source::empty_folder(dir).map_err(|e| {
                other_error(
                    self.provider(),
                    format!("cannot empty {}", dir.display()),
                    e,
                )
            })?;
            self.write_commit(&repo, spec, &spec.location, oid, dir, 0)?;
        }
        self.describe(&repo, oid, notes)
    }
}

impl GitSource {
    /// The snapshot of a commit.
    fn describe(
        &self,
        repo: &Repository,
        oid: Oid,
        notes: Vec<String>,
    ) -> Result<SourceSnapshot, SourceError> {
        let provider = self.provider();
        let commit = repo
            .find_commit(oid)
            .map_err(|e| other_error(provider, format!("cannot read commit {oid}"), e))?;
        let mut snapshot = SourceSnapshot::new(oid.to_string());
        let author = commit.author();
        snapshot.author = match (author.name().ok(), author.email().ok()) {
            (Some(name), Some(email)) if !email.is_empty() => Some(format!("{name} <{email}>")),
            (Some(name), _) => Some(name.to_owned()),
            (None, Some(email)) => Some(email.to_owned()),
            (None, None) => None,
        };
        snapshot.message = Some(
            String::from_utf8_lossy(commit.message_bytes())
                .trim_end()
                .to_owned(),
        );
        snapshot.time = DateTime::from_timestamp(commit.time().seconds(), 0);
        snapshot.notes = notes;
        Ok(snapshot)
    }

    /// Applies the changes from commit `from` to commit `to` to `dir`,
    /// which holds `from`'s tree as [`GitSource::write_commit`] wrote it.
    /// Returns false, having changed nothing, when it cannot: `from` is not
    /// in the repository, a submodule or `.gitmodules` changed, or a path
    /// is not UTF-8.
    fn write_difference(
        &self,
        repo: &Repository,
        from: Oid,
        to: Oid,
        dir: &Path,
    ) -> Result<bool, SourceError> {
        let provider = self.provider();
        if from == to {
            return Ok(true);
        }
        let tree_of = |oid: Oid| repo.find_commit(oid).and_then(|c| c.tree());
        let (Ok(old), Ok(new)) = (tree_of(from), tree_of(to)) else {
            return Ok(false);
        };
        let diff = repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .map_err(|e| other_error(provider, format!("cannot compare {from} and {to}"), e))?;
        // (path, blob, mode) to write; paths to remove.
        let mut add: Vec<(String, Oid, i32)> = Vec::new();
        let mut remove: Vec<String> = Vec::new();
        for delta in diff.deltas() {
            let mut sides = Vec::with_capacity(2);
            if delta.old_file().exists() {
                sides.push((delta.old_file(), false));
            }
            if delta.new_file().exists() {
                sides.push((delta.new_file(), true));
            }
            for (file, is_new) in sides {
                let mode = i32::from(file.mode());
                let Some(path) = file.path().and_then(|p| p.to_str()) else {
                    return Ok(false);
                };
                if mode == 0o160000 || path == ".gitmodules" {
                    return Ok(false);
                }
                if path.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
                    continue;
                }
                if is_new {
                    add.push((path.to_owned(), file.id(), mode));
                } else {
                    remove.push(path.to_owned());
                }
            }
        }
        let io = |what: &Path, e: std::io::Error| {
            other_error(provider, format!("cannot write {}", what.display()), e)
        };
        for rel in &remove {
            let path = dir.join(rel);
            crate::fsutil::remove_file_if_present(&path).map_err(|e| io(&path, e))?;
            // Folders left empty go, as a fresh checkout would not have them.
            let mut parent = path.parent();
            while let Some(p) = parent.filter(|p| *p != dir) {
                if fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
        for (rel, id, mode) in &add {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            let blob = repo
                .find_blob(*id)
                .map_err(|e| other_error(provider, format!("cannot read {rel}"), e))?;
            write_blob(&path, *mode, blob.content()).map_err(|e| io(&path, e))?;
        }
        Ok(true)
    }
}

/// Whether a location is a URL (fetched into a cache) rather than a path.
fn is_url(location: &str) -> bool {
    if location.contains("://") {
        return true;
    }
    // scp-like `user@host:path`
    match (location.find('@'), location.find(':'), location.find('/')) {
        (Some(at), Some(colon), slash) => at < colon && slash.is_none_or(|s| colon < s),
        _ => false,
    }
}

fn branch_names(repo: &Repository) -> Vec<String> {
    let mut names: Vec<String> = repo
        .branches(Some(git2::BranchType::Local))
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn branch_commit(repo: &Repository, branch: &str) -> Option<Oid> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .ok()
        .map(|c| c.id())
}

/// Maps a libgit2 error to what the caller should do.
fn classify(provider: &str, url: &str, e: git2::Error, refused: Option<String>) -> SourceError {
    let shown = redact(url);
    if let Some(message) = refused {
        return SourceError::Auth {
            provider: provider.to_owned(),
            message: format!("{shown}: {message}"),
        };
    }
    // What libgit2's messages say (lower-cased) of refused credentials,
    // and of a repository that is not there.
    const REFUSED: [&str; 4] = ["401", "authentication", "unauthorized", "403"];
    const MISSING: [&str; 6] = [
        "not found",
        "404",
        "could not find repository",
        "does not appear to be a git repository",
        "not a git repository",
        "no such file",
    ];
    let text = e.message().to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if e.code() == ErrorCode::Auth || says(&REFUSED) {
        return SourceError::Auth {
            provider: provider.to_owned(),
            message: format!("{shown}: {}", e.message()),
        };
    }
    if says(&MISSING) {
        return SourceError::NotFound {
            provider: provider.to_owned(),
            what: format!("the repository {shown}"),
            hint: Some(e.message().to_owned()),
        };
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Ssh | ErrorClass::Http => {
            SourceError::Unreachable {
                provider: provider.to_owned(),
                location: shown,
                message: e.message().to_owned(),
            }
        }
        _ => other_error(provider, format!("fetching {shown} failed"), e),
    }
}

/// A URL with any password left out.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && (!host.contains('/') || userinfo.contains(':'))
    {
        let user = userinfo.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// The credentials a spec names, read when a fetch needs them.
struct Credentials {
    username: Option<String>,
    password: Option<String>,
    ssh_key: Option<PathBuf>,
    ssh_passphrase: Option<String>,
}

impl Credentials {
    fn from_spec(provider: &str, spec: &SourceSpec) -> Result<Self, SourceError> {
        Ok(Credentials {
            username: spec.options.get("username").cloned(),
            password: super::secret_option(provider, spec, "password")?,
            ssh_key: spec.options.get("ssh_key").map(PathBuf::from),
            ssh_passphrase: super::secret_option(provider, spec, "ssh_passphrase")?,
        })
    }
}

/// `.gitmodules` of a tree: submodule path to URL.
fn gitmodules(repo: &Repository, tree: &git2::Tree<'_>) -> BTreeMap<String, String> {
    let Ok(entry) = tree.get_path(Path::new(".gitmodules")) else {
        return BTreeMap::new();
    };
    let Ok(blob) = repo.find_blob(entry.id()) else {
        return BTreeMap::new();
    };
    parse_gitmodules(&String::from_utf8_lossy(blob.content()))
}

/// Parses the `path` and `url` of each `[submodule "..."]` section.
fn parse_gitmodules(text: &str) -> BTreeMap<String, String> {
    let mut sections: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line
                .strip_prefix("[submodule")
                .and_then(|r| r.trim().strip_suffix(']'))
                .map(|n| n.trim().trim_matches('"').to_owned());
            continue;
        }
        let (Some(name), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        let section = sections.entry(name.clone()).or_default();
        match key.trim() {
            "path" => section.0 = Some(value),
            "url" => section.1 = Some(value),
            _ => {}
        }
    }
    sections
        .into_values()
        .filter_map(|(path, url)| Some((path?.trim_end_matches('/').to_owned(), url?)))
        .collect()
}

/// A submodule URL relative to its superproject's (`../lib.git`).
fn resolve_submodule_url(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_owned();
    }
    let mut base = parent.trim_end_matches('/').to_owned();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            match base.rfind(['/', ':']) {
                Some(i) => base.truncate(i),
                None => base.clear(),
            }
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

struct TreeWriter<'a> {
    source: &'a GitSource,
    spec: &'a SourceSpec,
    location: &'a str,
    repo: &'a Repository,
    submodules: Option<BTreeMap<String, String>>,
    depth: usize,
}

impl TreeWriter<'_> {
    fn write(
        &mut self,
        tree: &git2::Tree<'_>,
        dir: &Path,
        prefix: &str,
    ) -> Result<(), SourceError> {
        let provider = self.source.provider();
        let io = |what: &Path, e: std::io::Error| {
            other_error(provider, format!("cannot write {}", what.display()), e)
        };
        for entry in tree.iter() {
            let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                return Err(SourceError::other(
                    provider,
                    format!("{prefix}: a file name is not UTF-8"),
                ));
            };
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.eq_ignore_ascii_case(".git")
            {
                continue;
            }
            let target = dir.join(name);
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| other_error(provider, format!("cannot read {rel}"), e))?;
                    fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
                    self.write(&sub, &target, &rel)?;
                }
                Some(ObjectType::Blob) => {
                    let blob = self
                        .repo
                        .find_blob(entry.id())
                        .map_err(|e| other_error(provider, format!("cannot read {rel}"), e))?;
                    write_blob(&target, entry.filemode(), blob.content())
                        .map_err(|e| io(&target, e))?;
                }
                Some(ObjectType::Commit) => self.write_submodule(&rel, entry.id(), &target)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn write_submodule(
        &mut self,
        rel: &str,
        commit: Oid,
        target: &Path,
    ) -> Result<(), SourceError> {
        let provider = self.source.provider();
        let Some(modules) = &self.submodules else {
            return Ok(());
        };
        let Some(url) = modules.get(rel) else {
            return Err(SourceError::other(
                provider,
                format!("submodule {rel} has no entry in .gitmodules"),
            ));
        };
        if self.depth + 1 > MAX_SUBMODULE_DEPTH {
            return Err(SourceError::other(
                provider,
                format!("submodules nested deeper than {MAX_SUBMODULE_DEPTH} levels at {rel}"),
            ));
        }
        let url = resolve_submodule_url(self.location, url);
        fs::create_dir_all(target)
            .map_err(|e| other_error(provider, format!("cannot write {}", target.display()), e))?;
        let sub_spec = SourceSpec {
            location: url.clone(),
            reference: None,
            options: self.spec.options.clone(),
        };
        let repo = self.source.open(&sub_spec, &url)?;
        if repo.find_commit(commit).is_err() && is_url(&url) {
            // Not on a branch or tag: ask for the commit itself.
            self.source
                .fetch_into(&repo, &sub_spec, &url, &[commit.to_string()])
                .ok();
        }
        if repo.find_commit(commit).is_err() {
            return Err(SourceError::NotFound {
                provider: provider.to_owned(),
                what: format!("commit {commit} of submodule {rel} in {}", redact(&url)),
                hint: Some("push the submodule's commit to its repository".to_owned()),
            });
        }
        self.source
            .write_commit(&repo, &sub_spec, &url, commit, target, self.depth + 1)
    }
}

/// Writes a blob with its git mode: executable bit kept, symlinks as links.
fn write_blob(target: &Path, mode: i32, content: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if mode == 0o120000 {
            let link =
                std::ffi::OsStr::new(std::str::from_utf8(content).map_err(std::io::Error::other)?);
            return std::os::unix::fs::symlink(link, target);
        }
        fs::write(target, content)?;
        if mode == 0o100755 {
            fs::set_permissions(target, fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        fs::write(target, content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(is_url("https://h/x.git"));
        assert!(is_url("file:///tmp/x"));
        assert!(is_url("git@github.com:o/r.git"));
        assert!(!is_url("/srv/repos/app.git"));
        assert!(!is_url("./a@b/c:d"));
    }

    #[test]
    fn submodule_urls() {
        assert_eq!(
            resolve_submodule_url("http://h/a/b.git", "../c.git"),
            "http://h/a/c.git"
        );
        assert_eq!(resolve_submodule_url("/srv/a/b", "./c"), "/srv/a/b/c");
        assert_eq!(resolve_submodule_url("x", "https://o/c"), "https://o/c");
    }

    #[test]
    fn gitmodules_parsed() {
        let m = parse_gitmodules("[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n");
        assert_eq!(m.get("vendor/lib").map(String::as_str), Some("../lib.git"));
    }

    #[test]
    fn passwords_redacted() {
        assert_eq!(redact("https://u:secret@h/x"), "https://u:***@h/x");
        assert_eq!(redact("https://h/x"), "https://h/x");
    }
}
