//! Kubernetes manifests for a function app: what `func kubernetes deploy`
//! writes, fixed where its users complain (`fnhost kube manifests`).
//!
//! From one app (a slot of a [`Site`], or a folder) [`manifests`] makes:
//!
//! | object | name | what |
//! | --- | --- | --- |
//! | `Secret` | `NAME` | the app settings, as every container's environment |
//! | `Secret` | `func-keys-kube-secret-NAME` | the function keys (`host.master`, `functions.F.default`, ... and fnhost's `secrets.json`), mounted read-only |
//! | `ConfigMap` | `NAME-manager-ca` | with [`Delivery::with_ca_certs`]: an https manager's CA for the fetch init container |
//! | `Deployment` + `Service` | `NAME-http` | the HTTP functions |
//! | `HTTPScaledObject` (KEDA HTTP add-on) or `HorizontalPodAutoscaler` | `NAME-http` | HTTP scaling (`func` leaves one replica) |
//! | `Deployment` + `ScaledObject` | `NAME` | queue-style triggers, scaled by KEDA (`azure-queue`, `azure-blob`, `rabbitmq`, ...) |
//! | `Deployment` | `NAME-timers` | timer triggers: exactly one replica, replaced not rolled (`Recreate`), the app id set (`func` writes an invalid `timertrigger` scaler) |
//!
//! Each Deployment runs `fnhost serve` with only its own functions
//! enabled (the others disabled by `AzureWebJobs_F_Disabled`, which fnhost
//! and Azure's host both honour, besides Azure's
//! `AzureFunctionsJobHost__functions__N`). The content comes either from
//! an init container, `fnhost fetch`, which fetches the slot's active
//! content by digest from `fnhost manage` with a token kept in a Secret
//! ([`Delivery::Fetch`]), or from an image built from a generated
//! Dockerfile ([`Delivery::Image`]).
//!
//! ```no_run
//! use fnhost_deploy::Site;
//! use fnhost_deploy::kube::{self, Delivery, KubeApp, Options};
//!
//! # fn main() -> fnhost_deploy::Result<()> {
//! let site = Site::open(".fnhost")?;
//! let app = KubeApp::from_site(&site, "orders", "production")?;
//! let options = Options::new(Delivery::fetch("http://fnhost-manage.functions:7072"))
//!     .with_namespace("functions");
//! let out = kube::manifests(&app, &options)?;
//! print!("{}", out.to_yaml());
//! # Ok(()) }
//! ```
//!
//! Nothing here talks to a cluster; the tests validate the objects
//! against the Kubernetes and KEDA schemas offline.

mod objects;
mod scalers;
mod yaml;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fnhost_core::app::AppSettings;
use fnhost_core::keys::{KeyStore, Secrets};
use fnhost_core::{Function, FunctionApp};
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};
use crate::site::{PRODUCTION, Site};
use crate::store::Digest;

/// Where the app's files are in every container.
pub const SITE_ROOT: &str = "/home/site/wwwroot";
/// Where the keys Secret is mounted.
pub const KEYS_DIR: &str = "/run/secrets/functions-keys";
/// The key of the token in the fetch token Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the manager's CA certificates are mounted in the fetch init
/// container (`fnhost fetch --ca-cert`).
pub const MANAGER_CA_DIR: &str = "/run/fnhost/manager-ca";
/// The key of the certificates in the manager CA ConfigMap.
pub const CA_KEY: &str = "ca.crt";
/// The port `fnhost serve` listens on in the containers.
const PORT: u16 = 80;
/// The longest suffix added to the base name (`-timers`): Service and
/// Deployment names stay DNS labels of at most 63 characters.
const LONGEST_SUFFIX: usize = 7;

/// An app as the manifests need it: its functions, settings and keys,
/// and where it comes from.
#[derive(Debug)]
pub struct KubeApp {
    /// The app's name (in the home, or the folder's name).
    pub name: String,
    /// The slot, for an app of the home.
    pub slot: Option<String>,
    /// The loaded app (functions and their triggers).
    pub app: FunctionApp,
    /// The app settings.
    pub settings: BTreeMap<String, String>,
    /// The function keys.
    pub keys: Secrets,
    /// The active deployment's id and content digest, for an app of the
    /// home (pod annotations: a new deployment rolls the pods).
    pub deployment: Option<(String, Digest)>,
    /// The folder holding the app's files (what a Dockerfile copies).
    pub content_dir: PathBuf,
}

impl KubeApp {
    /// A slot of an app of the home: its active deployment, app settings
    /// and keys (the slot's `secrets.json`, created with new keys when
    /// missing, as `fnhost serve --app` does).
    pub fn from_site(site: &Site, app: &str, slot: &str) -> Result<KubeApp> {
        let active = site.require_active(app, slot)?;
        let settings = site.app_settings(app, slot)?;
        let manifest = site.manifest(app, &active.deployment)?;
        let loaded = load(app, &active.path, &settings)?;
        let keys = keys(app, &site.secrets_path(app, slot)?, &loaded)?;
        Ok(KubeApp {
            name: app.into(),
            slot: Some(slot.into()),
            app: loaded,
            settings,
            keys,
            deployment: Some((active.deployment, manifest.content_id())),
            content_dir: active.path,
        })
    }

    /// An app folder: its `local.settings.json` values and its keys
    /// (`DIR/.fnhost/secrets.json`, created when missing, as `fnhost
    /// serve DIR` does). `name` defaults to the folder's name.
    pub fn from_folder(dir: &Path, name: Option<&str>) -> Result<KubeApp> {
        let dir = std::path::absolute(dir).ctx("cannot resolve the app folder", dir)?;
        let name = match name {
            Some(n) => n.to_string(),
            None => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let loaded = load(&name, &dir, &BTreeMap::new())?;
        let settings = loaded
            .settings()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let keys = keys(&name, &KeyStore::default_path(&dir), &loaded)?;
        Ok(KubeApp {
            name,
            slot: None,
            app: loaded,
            settings,
            keys,
            deployment: None,
            content_dir: dir,
        })
    }
}

fn load(app: &str, dir: &Path, settings: &BTreeMap<String, String>) -> Result<FunctionApp> {
    let mut loader = FunctionApp::loader(dir).with_environment(false);
    for (k, v) in settings {
        loader = loader.with_setting(k, v);
    }
    let loaded = loader.load().map_err(|e| kube_error(app, e.to_string()))?;
    if !loaded.is_valid() {
        let first = loaded
            .diagnostics()
            .iter()
            .find(|d| d.severity == fnhost_core::Severity::Error)
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(kube_error(
            app,
            format!(
                "the app has {} error(s), the first: {first}; fix them first (`fnhost validate`)",
                loaded.diagnostics().error_count()
            ),
        ));
    }
    Ok(loaded)
}

fn keys(app: &str, path: &Path, loaded: &FunctionApp) -> Result<Secrets> {
    let store = KeyStore::open(path).map_err(|e| kube_error(app, e.to_string()))?;
    store
        .ensure_function_keys(loaded.functions().iter().map(|f| f.name.as_str()))
        .map_err(|e| kube_error(app, e.to_string()))?;
    Ok(store.secrets())
}

fn kube_error(app: &str, message: impl Into<String>) -> Error {
    Error::Kube {
        app: app.into(),
        message: message.into(),
    }
}

/// How the containers get the app's files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// An init container runs `fnhost fetch --manager URL --token TOKEN
    /// --app APP [--slot S] --dest DIR [--ca-cert FILE]` into a volume
    /// the server reads; the token comes from the Secret `token_secret`
    /// (key `token`).
    Fetch {
        /// The management endpoint (`fnhost manage`).
        manager: String,
        /// The Secret holding the token.
        token_secret: String,
        /// When set, the token Secret is written with this token too.
        token: Option<String>,
        /// Certificates (DER) the init container trusts for an `https://`
        /// manager besides the image's system roots (its private CA, or
        /// its self-signed certificate): written to the ConfigMap
        /// `NAME-manager-ca` (key `ca.crt`, PEM), mounted at
        /// [`MANAGER_CA_DIR`] and given to `fnhost fetch --ca-cert`.
        /// Empty: none.
        ca_certs: Vec<Vec<u8>>,
    },
    /// The files are in the image, built from the Dockerfile of
    /// [`Manifests::dockerfile`] (`FROM` the fnhost image in `base`).
    Image {
        /// The image with fnhost to build from.
        base: String,
    },
}

impl Delivery {
    /// Fetching from `manager`, the token in the Secret `fnhost-fetch-token`.
    pub fn fetch(manager: impl Into<String>) -> Delivery {
        Delivery::Fetch {
            manager: manager.into(),
            token_secret: "fnhost-fetch-token".into(),
            token: None,
            ca_certs: Vec::new(),
        }
    }

    /// When fetching: also trusts these certificates (DER) for the
    /// `https://` manager (see [`Delivery::Fetch`]); `fnhost_cluster`'s
    /// `client::read_ca_certs` reads them from a PEM file as `fnhost
    /// fetch --ca-cert` does. Nothing changes for an image.
    pub fn with_ca_certs(mut self, certs: Vec<Vec<u8>>) -> Delivery {
        if let Delivery::Fetch { ca_certs, .. } = &mut self {
            *ca_certs = certs;
        }
        self
    }

    /// Baked into an image built `FROM fnhost:latest`.
    pub fn image() -> Delivery {
        Delivery::Image {
            base: "fnhost:latest".into(),
        }
    }
}

/// How the HTTP functions scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpScaling {
    /// KEDA's HTTP add-on (`HTTPScaledObject`): by requests in flight,
    /// to zero when idle; requests go through its interceptor.
    KedaHttp,
    /// A `HorizontalPodAutoscaler` on CPU (70% of the request), at least
    /// one replica; requests go straight to the Service.
    Hpa,
}

/// What to write; [`Options::new`] then `with_*`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// How the files reach the containers.
    pub delivery: Delivery,
    /// The namespace of every object (default `default`).
    pub namespace: String,
    /// The base name of the objects (default: the app's name in lower
    /// case, with `-SLOT` for a slot other than production).
    pub name: Option<String>,
    /// The image the containers run (default: `fnhost:latest` when
    /// fetching, `NAME:latest` when baked).
    pub image: Option<String>,
    /// How HTTP functions scale (default: the KEDA HTTP add-on).
    pub http_scaling: HttpScaling,
    /// The HTTP Service's type (default `ClusterIP`; `func` uses
    /// `LoadBalancer`, which bypasses the HTTP add-on's interceptor).
    pub service_type: String,
    /// The host names the HTTP add-on routes to the app (default: NAME).
    pub hosts: Vec<String>,
    /// The fewest replicas of scaled Deployments (default 0: KEDA scales
    /// to zero; an HPA keeps at least 1).
    pub min_replicas: u32,
    /// The most replicas of scaled Deployments (default 10).
    pub max_replicas: u32,
}

impl Options {
    /// Defaults, with `delivery`.
    pub fn new(delivery: Delivery) -> Options {
        Options {
            delivery,
            namespace: "default".into(),
            name: None,
            image: None,
            http_scaling: HttpScaling::KedaHttp,
            service_type: "ClusterIP".into(),
            hosts: Vec::new(),
            min_replicas: 0,
            max_replicas: 10,
        }
    }
    /// Sets [`Options::namespace`].
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
    /// Sets [`Options::name`].
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets [`Options::image`].
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
    /// Sets [`Options::http_scaling`].
    pub fn with_http_scaling(mut self, scaling: HttpScaling) -> Self {
        self.http_scaling = scaling;
        self
    }
    /// Sets [`Options::service_type`].
    pub fn with_service_type(mut self, service_type: impl Into<String>) -> Self {
        self.service_type = service_type.into();
        self
    }
    /// Sets [`Options::hosts`].
    pub fn with_hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts;
        self
    }
    /// Sets [`Options::min_replicas`] and [`Options::max_replicas`].
    pub fn with_replicas(mut self, min: u32, max: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max.max(min).max(1);
        self
    }
}

/// The objects for one app, and the Dockerfile when its content is baked
/// into an image.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Manifests {
    /// The base name of the objects.
    pub name: String,
    /// The image the containers run.
    pub image: String,
    /// The objects, in the order to apply them.
    pub objects: Vec<Value>,
    /// The Dockerfile ([`Delivery::Image`]): `FROM` the fnhost image,
    /// the app's files copied to [`SITE_ROOT`] from `wwwroot/`.
    pub dockerfile: Option<String>,
    /// What a person should know (a trigger KEDA cannot scale, functions
    /// declared in code, ...).
    pub notes: Vec<String>,
}

impl Manifests {
    /// Every object as one YAML stream (`---` between documents).
    pub fn to_yaml(&self) -> String {
        let docs: Vec<String> = self.objects.iter().map(yaml::to_yaml).collect();
        format!("---\n{}", docs.join("---\n"))
    }

    /// Writes `DIR/NAME.yaml` (owner-only: it holds the settings and
    /// keys), and with a Dockerfile also `DIR/Dockerfile`
    /// and the app's files (from `content`, `.funcignore` applied, the
    /// local `.fnhost/` state left out) in
    /// `DIR/wwwroot/`. Each file and the `wwwroot` folder appear whole or
    /// not at all. Returns what it wrote.
    pub fn write_to(&self, dir: &Path, content: &Path) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).ctx("cannot create the output folder", dir)?;
        let mut wrote = Vec::new();
        let yaml_path = dir.join(format!("{}.yaml", self.name));
        write_file(&yaml_path, self.to_yaml().as_bytes(), 0o600)
            .ctx("cannot write the manifests", &yaml_path)?;
        wrote.push(yaml_path);
        if let Some(dockerfile) = &self.dockerfile {
            let root = dir.join("wwwroot");
            let staging = dir.join(".wwwroot.writing");
            if staging.exists() {
                crate::fsutil::remove_tree(&staging)
                    .ctx("cannot remove a left-over folder", &staging)?;
            }
            // The keys reach the pods through their Secret, never the image.
            let files = crate::package::list_folder(content)?;
            for rel in files.iter().filter(|r| !r.starts_with(".fnhost/")) {
                let (from, to) = (content.join(rel), staging.join(rel));
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).ctx("cannot create a folder", parent)?;
                }
                fs::copy(&from, &to).ctx("cannot copy the app's file", &from)?;
            }
            fs::create_dir_all(&staging).ctx("cannot create a folder", &staging)?;
            if root.exists() {
                crate::fsutil::remove_tree(&root).ctx("cannot replace the earlier copy", &root)?;
            }
            fs::rename(&staging, &root).ctx("cannot move the app's files", &root)?;
            let path = dir.join("Dockerfile");
            write_file(&path, dockerfile.as_bytes(), 0o644)
                .ctx("cannot write the Dockerfile", &path)?;
            wrote.push(path);
            wrote.push(root);
        }
        Ok(wrote)
    }
}

/// The manifests of `app`.
///
/// Fails, naming the function and what to do, when a queue-style trigger
/// lacks what its KEDA scaler needs (a queue name, the setting naming its
/// connection), when the base name cannot be a Kubernetes name, or when
/// CA certificates are given for a manager that is not `https://`.
pub fn manifests(app: &KubeApp, options: &Options) -> Result<Manifests> {
    let name = base_name(app, options)?;
    if let Delivery::Fetch {
        manager, ca_certs, ..
    } = &options.delivery
        && !ca_certs.is_empty()
        && !manager.starts_with("https://")
    {
        return Err(kube_error(
            &app.name,
            format!(
                "a CA certificate is for an https:// manager, and {manager} is not one; give the manager's https:// URL (`fnhost manage --tls-cert`), or no CA certificate"
            ),
        ));
    }
    if let Some(bad) = app.settings.keys().find(|k| !is_secret_key(k)) {
        return Err(kube_error(
            &app.name,
            format!(
                "the app setting {bad:?} cannot be a key of a Kubernetes Secret (letters, digits, `-`, `_` and `.` only); rename it (`fnhost settings`, or local.settings.json)"
            ),
        ));
    }
    let mut notes = Vec::new();
    let functions = app.app.functions();
    let mut http = Vec::new();
    let mut queued = Vec::new();
    let mut timers = Vec::new();
    let mut unscaled = Vec::new();
    let settings = app_settings(&app.settings);
    for f in functions {
        if f.http.is_some() {
            http.push(f);
        } else if f.timer.is_some() || f.trigger_type().eq_ignore_ascii_case("timerTrigger") {
            timers.push(f);
        } else {
            match scalers::keda_trigger(f, &settings).map_err(|m| kube_error(&app.name, m))? {
                Some(trigger) => queued.push((f, trigger)),
                None => unscaled.push(f),
            }
        }
    }
    if functions.is_empty() {
        let why = match fnhost_core::app::functions_declared_in_code(app.app.root()) {
            Some(file) => format!(
                "its functions are declared in code ({file}); their triggers are known only to the language worker, so every function runs in the HTTP Deployment"
            ),
            None => "the app has no functions".to_string(),
        };
        notes.push(why);
    }
    for f in &unscaled {
        notes.push(format!(
            "function {}: KEDA has no scaler for {}; it runs in Deployment {name} with at least one replica",
            f.name,
            f.trigger_type()
        ));
    }

    let image = options
        .image
        .clone()
        .unwrap_or_else(|| match options.delivery {
            Delivery::Fetch { .. } => "fnhost:latest".into(),
            Delivery::Image { .. } => format!("{name}:latest"),
        });
    let b = objects::Builder {
        app,
        options,
        name: &name,
        image: image.clone(),
    };
    let mut objects = vec![b.settings_secret(), b.keys_secret()];
    if let Some(ca) = b.manager_ca_config_map() {
        objects.push(ca);
    }
    if let Delivery::Fetch {
        token_secret,
        token: Some(token),
        ..
    } = &options.delivery
    {
        objects.push(b.object(
            "v1",
            "Secret",
            token_secret,
            json!({"type": "Opaque", "stringData": {TOKEN_KEY: token}}),
        ));
    }
    if !http.is_empty() || functions.is_empty() {
        let http_name = format!("{name}-http");
        let only: Vec<&Function> = http.clone();
        objects.push(b.deployment(&http_name, "http", &only, None, true));
        objects.push(b.service(&http_name));
        objects.push(match options.http_scaling {
            HttpScaling::KedaHttp => b.http_scaled_object(&http_name),
            HttpScaling::Hpa => b.hpa(&http_name),
        });
    }
    if !queued.is_empty() || !unscaled.is_empty() {
        let mut only: Vec<&Function> = queued.iter().map(|(f, _)| *f).collect();
        only.extend(unscaled.iter().copied());
        // Unscaled triggers need a replica running; scaled ones leave the
        // count to KEDA.
        let replicas = if queued.is_empty() {
            Some(options.min_replicas.max(1))
        } else {
            None
        };
        objects.push(b.deployment(&name, "triggers", &only, replicas, false));
        if !queued.is_empty() {
            let mut triggers: Vec<Value> = queued.into_iter().map(|(_, t)| t).collect();
            if !unscaled.is_empty() {
                // Keep one replica for the triggers KEDA cannot see.
                triggers.push(json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}));
            }
            objects.push(b.scaled_object(&name, !unscaled.is_empty(), triggers));
        }
    }
    if !timers.is_empty() {
        objects.push(b.deployment(&format!("{name}-timers"), "timers", &timers, Some(1), false));
    }
    let dockerfile = match &options.delivery {
        Delivery::Image { base } => Some(objects::dockerfile(base, app)),
        Delivery::Fetch { .. } => None,
    };
    Ok(Manifests {
        name,
        image,
        objects,
        dockerfile,
        notes,
    })
}

/// A Secret's data key: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn app_settings(settings: &BTreeMap<String, String>) -> AppSettings {
    let mut s = AppSettings::new();
    for (k, v) in settings {
        s.set(k, v);
    }
    s
}

/// The base name: given, or the app's (and slot's) in lower case; a DNS
/// label that leaves room for the longest suffix.
fn base_name(app: &KubeApp, options: &Options) -> Result<String> {
    let name = match &options.name {
        Some(n) => n.clone(),
        None => {
            let mut n = app.name.to_ascii_lowercase();
            if let Some(slot) = app.slot.as_deref().filter(|s| *s != PRODUCTION) {
                n = format!("{n}-{}", slot.to_ascii_lowercase());
            }
            n
        }
    };
    let label = name.len() <= 63 - LONGEST_SUFFIX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !label {
        return Err(kube_error(
            &app.name,
            format!(
                "{name:?} cannot name Kubernetes objects (lower-case letters, digits and `-`, starting with a letter, at most {} characters); give a name with --name",
                63 - LONGEST_SUFFIX
            ),
        ));
    }
    Ok(name)
}

/// Writes `path` whole or not at all (a temporary file renamed).
fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", crate::fsutil::random_hex(4)));
    crate::fsutil::atomic_write(path, &tmp, data, mode)
}
