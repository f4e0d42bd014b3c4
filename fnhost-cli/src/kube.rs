//! `fnhost kube manifests`: Kubernetes and KEDA manifests for an app of the
//! home or an app folder (`fnhost_deploy::kube`).

use std::path::{Path, PathBuf};

use fnhost_deploy::kube::{self, Delivery, HttpScaling, KubeApp, Options};
use fnhost_deploy::{PRODUCTION, Site};

use crate::{CmdResult, Failure};

/// `fnhost kube ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Write the Kubernetes objects of an app (Secrets, Deployments,
    /// Service, KEDA ScaledObject and HTTPScaledObject or an HPA), as
    /// `func kubernetes deploy` does, with HTTP scaling, timers in one
    /// replica and the content fetched by digest or baked into an image.
    Manifests(Args),
}

/// How HTTP functions scale.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HttpScalingArg {
    /// KEDA's HTTP add-on (HTTPScaledObject), to zero when idle.
    KedaHttp,
    /// A HorizontalPodAutoscaler on CPU, at least one replica.
    Hpa,
}

/// Arguments of `fnhost kube manifests`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app of the home (its active deployment and app settings). Not
    /// with --path.
    #[arg(required_unless_present = "path", conflicts_with = "path")]
    app: Option<String>,
    /// The slot (default: production).
    #[arg(long, value_name = "SLOT", requires = "app")]
    slot: Option<String>,
    /// An app folder instead of an app of the home (its
    /// local.settings.json values are the settings).
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// The namespace of the objects.
    #[arg(long, default_value = "default", value_name = "NS")]
    namespace: String,
    /// The base name of the objects (default: the app's name in lower
    /// case, with -SLOT for a slot other than production).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The image the containers run (default: fnhost:latest when
    /// fetching, NAME:latest with --dockerfile).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// The management endpoint the init container fetches the content
    /// from (`fnhost fetch --manager URL`). Needed unless --dockerfile.
    #[arg(long, value_name = "URL", required_unless_present = "dockerfile")]
    manager: Option<String>,
    /// Trust the certificates of this PEM file for an https:// --manager
    /// (its private CA, or its self-signed certificate): they go in a
    /// ConfigMap NAME-manager-ca mounted into the init container, which
    /// runs `fnhost fetch --ca-cert`.
    #[arg(long, value_name = "FILE", conflicts_with = "dockerfile")]
    ca_cert: Option<PathBuf>,
    /// The Secret holding the fetch token (key `token`).
    #[arg(long, default_value = "fnhost-fetch-token", value_name = "SECRET")]
    token_secret: String,
    /// Also write the token Secret with this token (it then sits in the
    /// output, owner-only). Without it, create the Secret yourself.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FNHOST_FETCH_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Bake the content into an image: write a Dockerfile and the app's
    /// files beside the manifests (needs --out); no init container.
    #[arg(long, requires = "out", conflicts_with = "manager")]
    dockerfile: bool,
    /// With --dockerfile: the image with fnhost to build from.
    #[arg(long, default_value = "fnhost:latest", value_name = "IMAGE")]
    base_image: String,
    /// How HTTP functions scale.
    #[arg(long, value_enum, default_value_t = HttpScalingArg::KedaHttp)]
    http_scaling: HttpScalingArg,
    /// A host name the KEDA HTTP add-on routes to the app (repeat for
    /// more; default: NAME).
    #[arg(long = "http-host", value_name = "HOST")]
    http_hosts: Vec<String>,
    /// The HTTP Service's type.
    #[arg(long, default_value = "ClusterIP", value_name = "TYPE")]
    service_type: String,
    /// The fewest replicas of scaled Deployments (0: KEDA scales to zero).
    #[arg(long, default_value_t = 0, value_name = "N")]
    min_replicas: u32,
    /// The most replicas of scaled Deployments.
    #[arg(long, default_value_t = 10, value_name = "N")]
    max_replicas: u32,
    /// Write DIR/NAME.yaml (and with --dockerfile, DIR/Dockerfile and
    /// DIR/wwwroot/) instead of printing the YAML.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) fn run(command: Command, home: &Path) -> CmdResult {
    let Command::Manifests(args) = command;
    let app = match (&args.app, &args.path) {
        (Some(name), _) => {
            let site = Site::open(home).map_err(|e| Failure::Usage(e.to_string()))?;
            let slot = args.slot.as_deref().unwrap_or(PRODUCTION);
            KubeApp::from_site(&site, name, slot).map_err(|e| Failure::Usage(e.to_string()))?
        }
        (None, Some(dir)) => {
            KubeApp::from_folder(dir, None).map_err(|e| Failure::Usage(e.to_string()))?
        }
        (None, None) => return Err(Failure::Usage("give an APP or --path DIR".into())),
    };
    let ca_certs = match &args.ca_cert {
        Some(file) => fnhost_cluster::client::read_ca_certs(file)
            .map_err(|e| Failure::Usage(e.to_string()))?,
        None => Vec::new(),
    };
    let delivery = match &args.manager {
        Some(manager) if !args.dockerfile => Delivery::Fetch {
            manager: manager.clone(),
            token_secret: args.token_secret.clone(),
            token: args.token.clone(),
            ca_certs,
        },
        _ => Delivery::Image {
            base: args.base_image.clone(),
        },
    };
    let mut options = Options::new(delivery)
        .with_namespace(&args.namespace)
        .with_http_scaling(match args.http_scaling {
            HttpScalingArg::KedaHttp => HttpScaling::KedaHttp,
            HttpScalingArg::Hpa => HttpScaling::Hpa,
        })
        .with_service_type(&args.service_type)
        .with_hosts(args.http_hosts.clone())
        .with_replicas(args.min_replicas, args.max_replicas);
    if let Some(name) = &args.name {
        options = options.with_name(name);
    }
    if let Some(image) = &args.image {
        options = options.with_image(image);
    }
    let out = kube::manifests(&app, &options).map_err(|e| Failure::Usage(e.to_string()))?;
    for note in &out.notes {
        eprintln!("fnhost: note: {note}");
    }
    match &args.out {
        None => print!("{}", out.to_yaml()),
        Some(dir) => {
            let wrote = out
                .write_to(dir, &app.content_dir)
                .map_err(|e| Failure::Message(e.to_string()))?;
            for path in wrote {
                eprintln!("fnhost: wrote {}", path.display());
            }
            let yaml = dir.join(format!("{}.yaml", out.name));
            if out.dockerfile.is_some() {
                eprintln!(
                    "fnhost: next: docker build -t {} {}, push it where the cluster pulls from, then kubectl apply -f {}",
                    out.image,
                    dir.display(),
                    yaml.display()
                );
            } else {
                eprintln!("fnhost: next: kubectl apply -f {}", yaml.display());
            }
        }
    }
    Ok(())
}
