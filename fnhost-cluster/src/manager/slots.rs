//! What the manager knows of an app slot's active deployment: its
//! manifest digest, settings and keys, HTTP routes and timers, read from
//! the [`Site`] and kept while the deployment and settings stay the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fnhost_core::FunctionApp;
use fnhost_core::keys::{KeyStore, Secrets};
use fnhost_deploy::Site;

use crate::error::{Error, Result};
use crate::protocol::{RouteSpec, SlotConfig};
use crate::sha256_hex;

/// A timer function of a slot.
#[derive(Debug, Clone)]
pub(crate) struct TimerSpec {
    pub(crate) function: String,
    pub(crate) schedule: fnhost_core::schedule::Schedule,
    pub(crate) run_on_startup: bool,
}

/// One slot's active deployment, as the cluster needs it.
#[derive(Debug, Clone)]
pub(crate) struct SlotInfo {
    pub(crate) deployment: String,
    pub(crate) manifest: String,
    pub(crate) config: SlotConfig,
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) timers: Vec<TimerSpec>,
}

/// Reads slots from the site, cached by (deployment, settings version).
#[derive(Debug)]
pub(crate) struct Slots {
    site: Site,
    cache: Mutex<HashMap<(String, String), Arc<SlotInfo>>>,
    /// Manifest digest → (app, deployment), for serving manifests.
    manifests: Mutex<HashMap<String, (String, String)>>,
}

impl Slots {
    pub(crate) fn new(site: Site) -> Slots {
        Slots {
            site,
            cache: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn site(&self) -> &Site {
        &self.site
    }

    /// The slot's settings and keys (keys created when missing, with a
    /// key for every function of `functions`).
    pub(crate) fn config(&self, app: &str, slot: &str, functions: &[String]) -> Result<SlotConfig> {
        let settings = self.site.app_settings(app, slot)?;
        let path = self.site.secrets_path(app, slot)?;
        let keys = KeyStore::open(&path).map_err(|e| Error::io(&path, e))?;
        keys.ensure_function_keys(functions.iter().map(String::as_str))
            .map_err(|e| Error::io(&path, e))?;
        let secrets: Secrets = keys.secrets();
        let text = serde_json::to_string(&(&settings, &secrets)).unwrap_or_default();
        Ok(SlotConfig {
            settings,
            secrets: Some(secrets),
            version: sha256_hex(text.as_bytes()),
        })
    }

    /// The slot's active deployment, `None` when it has none.
    pub(crate) fn info(&self, app: &str, slot: &str) -> Result<Option<Arc<SlotInfo>>> {
        let Some(active) = self.site.active(app, slot)? else {
            return Ok(None);
        };
        let settings = self.site.app_settings(app, slot)?;
        let settings_key = sha256_hex(
            serde_json::to_string(&settings)
                .unwrap_or_default()
                .as_bytes(),
        );
        let key = (format!("{app}/{slot}/{}", active.deployment), settings_key);
        if let Some(hit) = self.lock_cache().get(&key) {
            // Keys may be rotated (`fnhost keys`): read them each time.
            let mut info = (**hit).clone();
            let functions: Vec<String> = info.routes.iter().map(|r| r.function.clone()).collect();
            info.config = self.config(app, slot, &functions)?;
            return Ok(Some(Arc::new(info)));
        }
        let manifest = self.site.manifest(app, &active.deployment)?;
        let digest = manifest.content_id().to_hex();
        let mut loader = FunctionApp::loader(&active.path);
        for (k, v) in &settings {
            loader = loader.with_setting(k.clone(), v.clone());
        }
        let loaded = loader.load().map_err(|e| Error::App {
            app: format!("{app}/{slot}"),
            message: e.to_string(),
        })?;
        let mut routes = Vec::new();
        let mut timers = Vec::new();
        for f in loaded.functions() {
            if f.disabled {
                continue;
            }
            if let Some(h) = &f.http {
                routes.push(RouteSpec {
                    function: f.name.clone(),
                    template: h.template.as_str().to_string(),
                    methods: if h.methods.is_all() {
                        Vec::new()
                    } else {
                        h.methods.iter().map(|m| m.as_str().to_string()).collect()
                    },
                    auth: h.auth_level.to_string(),
                });
            }
            if let Some(t) = &f.timer {
                timers.push(TimerSpec {
                    function: f.name.clone(),
                    schedule: t.schedule.clone(),
                    run_on_startup: t.run_on_startup,
                });
            }
        }
        let functions: Vec<String> = loaded.functions().iter().map(|f| f.name.clone()).collect();
        let info = Arc::new(SlotInfo {
            deployment: active.deployment.clone(),
            manifest: digest.clone(),
            config: self.config(app, slot, &functions)?,
            routes,
            timers,
        });
        self.manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest, (app.to_string(), active.deployment.clone()));
        let mut cache = self.lock_cache();
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(key, info.clone());
        Ok(Some(info))
    }

    /// The manifest with content id `digest`, as JSON, when a slot's
    /// deployment known here has it.
    pub(crate) fn manifest_json(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let found = self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned();
        let found = match found {
            Some(f) => Some(f),
            None => self.find_manifest(digest)?,
        };
        let Some((app, deployment)) = found else {
            return Ok(None);
        };
        let manifest = self.site.manifest(&app, &deployment)?;
        if manifest.content_id().to_hex() != digest {
            return Ok(None);
        }
        Ok(Some(
            serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?,
        ))
    }

    /// Looks through every slot's active deployment.
    fn find_manifest(&self, digest: &str) -> Result<Option<(String, String)>> {
        for app in self.site.apps()? {
            for slot in self.site.slots(&app.name)? {
                if let Some(info) = self.info(&app.name, &slot)?
                    && info.manifest == digest
                {
                    return Ok(Some((app.name.clone(), info.deployment.clone())));
                }
            }
        }
        Ok(None)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<SlotInfo>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
