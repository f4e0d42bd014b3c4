//! The objects themselves: Secrets, Deployments (with `fnhost serve`,
//! the init container, the keys mounted), the Service, the scalers, and
//! the Dockerfile.

use std::path::Path;

use base64::Engine as _;
use fnhost_core::Function;
use serde_json::{Map, Value, json};

use super::{
    CA_KEY, Delivery, KEYS_DIR, KubeApp, MANAGER_CA_DIR, Options, PORT, SITE_ROOT, TOKEN_KEY,
};
use crate::site::PRODUCTION;

/// The Dockerfile that bakes the app into an image of fnhost.
pub(super) fn dockerfile(base: &str, app: &KubeApp) -> String {
    let from = match &app.deployment {
        Some((id, digest)) => format!(
            "# {}/{}: deployment {id}, content sha256:{}\n",
            app.name,
            app.slot.as_deref().unwrap_or(PRODUCTION),
            digest.to_hex()
        ),
        None => format!(
            "# {}: from the folder {}\n",
            app.name,
            app.content_dir.display()
        ),
    };
    format!(
        "# Written by `fnhost kube manifests --dockerfile`: the app's files on\n\
         # an image that has `fnhost` on its PATH (and the language runtimes the\n\
         # app needs). Build it in this folder: docker build -t IMAGE .\n\
         {from}\
         ARG FNHOST_IMAGE={base}\n\
         FROM ${{FNHOST_IMAGE}}\n\
         COPY wwwroot/ {SITE_ROOT}/\n\
         EXPOSE {PORT}\n\
         ENTRYPOINT [\"fnhost\"]\n\
         CMD [\"serve\", \"{SITE_ROOT}\", \"--host\", \"0.0.0.0\", \"--port\", \"{PORT}\"]\n"
    )
}

/// Makes the objects of one app.
pub(super) struct Builder<'a> {
    pub(super) app: &'a KubeApp,
    pub(super) options: &'a Options,
    pub(super) name: &'a str,
    pub(super) image: String,
}

impl Builder<'_> {
    fn labels(&self, component: &str, selector: &str) -> Value {
        json!({
            "app": selector,
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "fnhost",
        })
    }

    pub(super) fn object(&self, api_version: &str, kind: &str, name: &str, rest: Value) -> Value {
        let mut o = json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": self.options.namespace,
                "labels": {"app.kubernetes.io/name": self.name, "app.kubernetes.io/managed-by": "fnhost"},
            },
        });
        if let (Some(o), Value::Object(rest)) = (o.as_object_mut(), rest) {
            o.extend(rest);
        }
        o
    }

    pub(super) fn settings_secret(&self) -> Value {
        let data: Map<String, Value> = self
            .app
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), base64(v.as_bytes())))
            .collect();
        self.object(
            "v1",
            "Secret",
            self.name,
            json!({"type": "Opaque", "data": data}),
        )
    }

    /// The name of the ConfigMap with the manager's CA certificates.
    fn manager_ca_name(&self) -> String {
        format!("{}-manager-ca", self.name)
    }

    /// The ConfigMap with the certificates the fetch init container
    /// trusts for an https manager (PEM, key [`CA_KEY`]); none without.
    pub(super) fn manager_ca_config_map(&self) -> Option<Value> {
        let Delivery::Fetch { ca_certs, .. } = &self.options.delivery else {
            return None;
        };
        if ca_certs.is_empty() {
            return None;
        }
        Some(self.object(
            "v1",
            "ConfigMap",
            &self.manager_ca_name(),
            json!({"data": {CA_KEY: pem_certificates(ca_certs)}}),
        ))
    }

    /// `func`'s key names (`host.master`, `host.function.default`,
    /// `functions.F.default`) for other tools, and fnhost's own file.
    pub(super) fn keys_secret(&self) -> Value {
        let keys = &self.app.keys;
        let mut data = Map::new();
        data.insert("host.master".into(), base64(keys.master.as_bytes()));
        for (n, k) in &keys.host {
            data.insert(format!("host.function.{n}"), base64(k.as_bytes()));
        }
        for (f, named) in &keys.functions {
            for (n, k) in named {
                data.insert(format!("functions.{f}.{n}"), base64(k.as_bytes()));
            }
        }
        let file = serde_json::to_vec_pretty(keys).unwrap_or_default();
        data.insert("secrets.json".into(), base64(&file));
        self.object(
            "v1",
            "Secret",
            &format!("func-keys-kube-secret-{}", self.name),
            json!({"type": "Opaque", "data": data}),
        )
    }

    /// A Deployment running `fnhost serve` with only `only` enabled.
    pub(super) fn deployment(
        &self,
        name: &str,
        component: &str,
        only: &[&Function],
        replicas: Option<u32>,
        http: bool,
    ) -> Value {
        let labels = self.labels(component, name);
        let mut annotations = Map::new();
        if let Some((id, digest)) = &self.app.deployment {
            annotations.insert("fnhost.dev/deployment".into(), id.clone().into());
            annotations.insert(
                "fnhost.dev/content".into(),
                format!("sha256:{}", digest.to_hex()).into(),
            );
        }
        let mut env = vec![
            json!({"name": "WEBSITE_SITE_NAME", "value": self.app.name}),
            json!({"name": "AzureFunctionsWebHost__hostid", "value": self.name}),
        ];
        for (i, f) in only.iter().enumerate() {
            env.push(
                json!({"name": format!("AzureFunctionsJobHost__functions__{i}"), "value": f.name}),
            );
        }
        for f in self.app.app.functions() {
            if !only.iter().any(|o| o.name == f.name) {
                env.push(
                    json!({"name": format!("AzureWebJobs_{}_Disabled", f.name), "value": "true"}),
                );
            }
        }
        let site = Path::new(SITE_ROOT)
            .parent()
            .map_or_else(|| SITE_ROOT.to_string(), |p| p.display().to_string());
        let mut container = json!({
            "name": name,
            "image": self.image,
            "command": ["fnhost"],
            "args": ["serve", SITE_ROOT, "--host", "0.0.0.0", "--port", PORT.to_string(),
                     "--secrets", format!("{KEYS_DIR}/secrets.json")],
            "envFrom": [{"secretRef": {"name": self.name}}],
            "env": env,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "function-keys", "mountPath": KEYS_DIR, "readOnly": true}],
        });
        if http {
            container["ports"] =
                json!([{"name": "http", "containerPort": PORT, "protocol": "TCP"}]);
            // fnhost's front has no anonymous health route: ready once it
            // accepts connections.
            let probe = json!({"tcpSocket": {"port": PORT}, "periodSeconds": 10,
                               "failureThreshold": 3, "successThreshold": 1, "timeoutSeconds": 5});
            container["readinessProbe"] = probe.clone();
            container["startupProbe"] = json!({"tcpSocket": {"port": PORT}, "periodSeconds": 2,
                                               "failureThreshold": 120, "timeoutSeconds": 5});
        }
        let mut volumes = vec![
            json!({"name": "function-keys", "secret": {"secretName": format!("func-keys-kube-secret-{}", self.name)}}),
        ];
        let mut pod = json!({});
        if let Delivery::Fetch {
            manager,
            token_secret,
            ca_certs,
            ..
        } = &self.options.delivery
        {
            volumes.push(json!({"name": "site", "emptyDir": {}}));
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.push(json!({"name": "site", "mountPath": site, "readOnly": true}));
            }
            let mut args = vec![
                "fetch".to_string(),
                "--manager".into(),
                manager.clone(),
                "--token".into(),
                "$(FNHOST_TOKEN)".into(),
                "--app".into(),
                self.app.name.clone(),
            ];
            if let Some(slot) = &self.app.slot {
                args.extend(["--slot".to_string(), slot.clone()]);
            }
            args.extend(["--dest".to_string(), SITE_ROOT.to_string()]);
            let mut fetch_mounts = vec![json!({"name": "site", "mountPath": site})];
            if !ca_certs.is_empty() {
                // The https manager's CA, for the init container only.
                args.extend([
                    "--ca-cert".to_string(),
                    format!("{MANAGER_CA_DIR}/{CA_KEY}"),
                ]);
                volumes.push(
                    json!({"name": "manager-ca", "configMap": {"name": self.manager_ca_name()}}),
                );
                fetch_mounts.push(
                    json!({"name": "manager-ca", "mountPath": MANAGER_CA_DIR, "readOnly": true}),
                );
            }
            pod["initContainers"] = json!([{
                "name": "fetch",
                "image": self.image,
                "command": ["fnhost"],
                "args": args,
                "env": [{"name": "FNHOST_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret, "key": TOKEN_KEY}}}],
                "volumeMounts": fetch_mounts,
            }]);
        }
        pod["containers"] = json!([container]);
        pod["volumes"] = json!(volumes);
        // Long enough for fnhost serve's own drain (30 s).
        pod["terminationGracePeriodSeconds"] = json!(40);
        let mut spec = json!({
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        });
        if !annotations.is_empty() {
            spec["template"]["metadata"]["annotations"] = Value::Object(annotations);
        }
        if let Some(n) = replicas {
            spec["replicas"] = json!(n);
        }
        if component == "timers" {
            // Never two replicas at once, not even during a rollout: a tick
            // fires once.
            spec["strategy"] = json!({"type": "Recreate"});
        }
        let mut d = self.object("apps/v1", "Deployment", name, json!({"spec": spec}));
        d["metadata"]["labels"] = labels;
        d
    }

    pub(super) fn service(&self, name: &str) -> Value {
        self.object(
            "v1",
            "Service",
            name,
            json!({"spec": {
                "type": self.options.service_type,
                "selector": {"app": name},
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            }}),
        )
    }

    pub(super) fn http_scaled_object(&self, name: &str) -> Value {
        let hosts = if self.options.hosts.is_empty() {
            vec![self.name.to_string()]
        } else {
            self.options.hosts.clone()
        };
        self.object(
            "http.keda.sh/v1alpha1",
            "HTTPScaledObject",
            name,
            json!({"spec": {
                "hosts": hosts,
                "scaleTargetRef": {"name": name, "kind": "Deployment", "apiVersion": "apps/v1",
                                   "service": name, "port": PORT},
                "replicas": {"min": self.options.min_replicas, "max": self.options.max_replicas},
                "scalingMetric": {"concurrency": {"targetValue": 100}},
                "scaledownPeriod": 300,
            }}),
        )
    }

    pub(super) fn hpa(&self, name: &str) -> Value {
        self.object(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            name,
            json!({"spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": self.options.min_replicas.max(1),
                "maxReplicas": self.options.max_replicas.max(1),
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}],
            }}),
        )
    }

    pub(super) fn scaled_object(&self, name: &str, keep_one: bool, triggers: Vec<Value>) -> Value {
        let min = if keep_one {
            self.options.min_replicas.max(1)
        } else {
            self.options.min_replicas
        };
        self.object(
            "keda.sh/v1alpha1",
            "ScaledObject",
            name,
            json!({"spec": {
                "scaleTargetRef": {"name": name},
                "pollingInterval": 30,
                "cooldownPeriod": 300,
                "minReplicaCount": min,
                "maxReplicaCount": self.options.max_replicas.max(1),
                "triggers": triggers,
            }}),
        )
    }
}

fn base64(bytes: &[u8]) -> Value {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into()
}

/// Certificates (DER) as PEM: one `CERTIFICATE` block each, base64 in
/// lines of 64 characters.
fn pem_certificates(certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}
