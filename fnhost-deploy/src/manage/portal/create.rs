//! New function: fnhost's templates ([`fnhost_core::scaffold`]) applied to
//! the active content (or to a new app when nothing is deployed yet), as
//! a new deployment.

use std::fs;
use std::path::Path;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use fnhost_core::scaffold::{self, Model, Template, WorkerRuntime};
use minijinja::context;

use super::access::{Page, form};
use super::files::deploy_change;
use super::pages::{failure, page_context};
use super::view::see_other;
use crate::package::Change;

/// `GET .../new`: the template picker.
pub(super) async fn page(Page { st, viewer, place }: Page) -> Response {
    let templates: Vec<(&str, &str)> = Template::ALL
        .iter()
        .map(|t| (t.name(), t.trigger_type()))
        .collect();
    let empty = st
        .shared
        .site
        .active(&place.app, &place.slot)
        .map(|a| a.is_none())
        .unwrap_or(true);
    let values = context! { templates => templates, empty => empty };
    let ctx = page_context(&st, &viewer, Some(&place), "new", values);
    st.views.page(StatusCode::OK, "new.html", ctx)
}

/// `POST .../new` (`template`, `name`, and `runtime` for an app with
/// nothing deployed): the function's files as a new deployment.
pub(super) async fn create(Page { st, viewer, place }: Page, req: Request) -> Response {
    let peer = super::files::peer_of(&req);
    let f = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let field = |n: &str| f.get(n).map_or("", |v| v.trim()).to_string();
    let (name, template, runtime) = (field("name"), field("template"), field("runtime"));
    let bad = |why: String| failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, &why);
    let template: Template = match template.parse() {
        Ok(t) => t,
        Err(e) => return bad(format!("{e}")),
    };
    if let Some(why) = &place.read_only {
        return failure(&st, &viewer, Some(&place), StatusCode::CONFLICT, why);
    }
    let active = match st.shared.site.active(&place.app, &place.slot) {
        Ok(a) => a.map(|a| a.path),
        Err(e) => return super::pages::site_failure(&st, &viewer, Some(&place), &e),
    };
    // `RUNTIME` or `RUNTIME-MODEL` (`node-v3`) for a new app.
    let runtime: Option<(WorkerRuntime, Option<Model>)> = if active.is_none() {
        let (r, m) = runtime
            .split_once('-')
            .map_or((runtime.as_str(), None), |(r, m)| (r, Some(m)));
        let model = match m.map(str::parse::<Model>).transpose() {
            Ok(m) => m,
            Err(e) => return bad(format!("{e}")),
        };
        match r.parse() {
            Ok(r) => Some((r, model)),
            Err(e) => return bad(format!("{e}")),
        }
    } else {
        None
    };
    let (n, tmp_root) = (name.clone(), st.shared.tmp.clone());
    let made = tokio::task::spawn_blocking(move || {
        scaffold_files(&tmp_root, active.as_deref(), runtime, template, &n)
    })
    .await
    .unwrap_or_else(|_| Err("the template could not be applied".into()));
    let files = match made {
        Ok(files) => files,
        Err(why) => return bad(why),
    };
    let message = format!("portal: new {} function {name}", template.name());
    match deploy_change(
        &st,
        &viewer,
        &place,
        peer,
        message,
        None,
        Change::Files(files),
    )
    .await
    {
        Ok(id) => {
            viewer.flash(&st, format!("Function {name} added: deployment {id}."));
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("function", &name)
                .finish();
            see_other(&format!("{}/code?{q}", place.base))
        }
        Err(refused) => refused.page,
    }
}

/// Applies the template in a scratch copy of the app's top-level files
/// and function.json files (or a new app of `runtime`): the files written,
/// by path in the app.
fn scaffold_files(
    tmp_root: &Path,
    active: Option<&Path>,
    runtime: Option<(WorkerRuntime, Option<Model>)>,
    template: Template,
    name: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let scratch = tmp_root.join(format!("new-{}", crate::fsutil::random_hex(8)));
    let result = (|| {
        fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let mut written = Vec::new();
        match active {
            Some(app) => {
                copy_skeleton(app, &scratch).map_err(|e| format!("cannot read the app: {e}"))?
            }
            None => {
                let (runtime, model) = runtime.unwrap_or_default();
                written =
                    scaffold::init_app(&scratch, runtime, model).map_err(|e| e.to_string())?;
            }
        }
        let made = scaffold::new_function(&scratch, template, name).map_err(|e| e.to_string())?;
        written.extend(made.created);
        written.extend(made.updated);
        written.sort();
        written.dedup();
        written
            .iter()
            .map(|p| {
                let rel = p
                    .strip_prefix(&scratch)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned();
                fs::read(p).map(|d| (rel, d)).map_err(|e| e.to_string())
            })
            .collect()
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// What the templates look at: top-level files, each folder's
/// function.json, and `src/functions/` (Node.js v4).
fn copy_skeleton(app: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(app)? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        if path.is_file() {
            fs::copy(&path, to.join(&name))?;
            // Deployed files are read-only; a template may append.
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(to.join(&name), fs::Permissions::from_mode(0o644))?;
        } else if path.join("function.json").is_file() {
            fs::create_dir_all(to.join(&name))?;
            fs::copy(
                path.join("function.json"),
                to.join(&name).join("function.json"),
            )?;
        }
    }
    let node = app.join("src/functions");
    if node.is_dir() {
        fs::create_dir_all(to.join("src/functions"))?;
        for entry in fs::read_dir(&node)? {
            let path = entry?.path();
            if let Some(name) = path.file_name().filter(|_| path.is_file()) {
                fs::copy(&path, to.join("src/functions").join(name))?;
            }
        }
    }
    Ok(())
}
