//! `/admin/...`: host status, the function list, and running any function
//! by hand. Every path needs the master key.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    Body, Inner, empty, json_response, manual_invocation, parse_query, presented_key, text,
    unauthorized,
};
use crate::app::Function;
use crate::invoke::Host;
use crate::timer::log_outcome;

pub(super) async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    if !inner.keys.is_master(presented_key(&req, &query)) {
        return unauthorized();
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let method = req.method().clone();
    match (segments.as_slice(), method) {
        (["host", "status"], hyper::Method::GET) => status(inner),
        (["functions"], hyper::Method::GET) => {
            let version = inner.host.current();
            let list: Vec<Value> = version
                .app()
                .functions()
                .iter()
                .map(function_json)
                .collect();
            json_response(StatusCode::OK, &Value::Array(list))
        }
        (["functions", name], hyper::Method::GET) => {
            match inner.host.current().app().function(name) {
                Some(f) => json_response(StatusCode::OK, &function_json(f)),
                None => no_function(name),
            }
        }
        (["functions", name], hyper::Method::POST) => {
            let name = (*name).to_owned();
            let wait = query
                .iter()
                .any(|(k, v)| k == "wait" && (v == "true" || v == "1"));
            invoke(inner, &name, req, wait).await
        }
        (["host", "status"] | ["functions"], _) => method_not_allowed("GET"),
        (["functions", _], _) => method_not_allowed("GET, POST"),
        _ => text(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

fn status(inner: &Inner) -> Response<Body> {
    let version = inner.host.current();
    let state = if inner.draining.load(Ordering::Acquire) {
        "Stopping"
    } else {
        "Running"
    };
    json_response(
        StatusCode::OK,
        &json!({
            "state": state,
            "version": env!("CARGO_PKG_VERSION"),
            "generation": version.generation(),
            "functions": version.app().functions().len(),
            "errors": version.app().diagnostics().error_count(),
            "uptimeSeconds": inner.started.elapsed().as_secs(),
        }),
    )
}

/// A function as the admin API lists it.
pub(crate) fn function_json(f: &Function) -> Value {
    let mut item = json!({
        "name": f.name,
        "trigger": f.trigger_type(),
        "disabled": f.disabled,
    });
    if let Some(h) = &f.http {
        item["http"] = json!({
            "route": h.path(),
            "methods": h.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "authLevel": h.auth_level.as_str(),
        });
    }
    if let Some(t) = &f.timer {
        item["schedule"] = json!({
            "expression": t.resolved,
            "runOnStartup": t.run_on_startup,
        });
    }
    item
}

async fn invoke(
    inner: &Arc<Inner>,
    name: &str,
    req: Request<Incoming>,
    wait: bool,
) -> Response<Body> {
    let version = inner.host.current();
    let Some(index) = version.app().function_index(name) else {
        return no_function(name);
    };
    let permit = match inner.permit() {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let (parts, body) = req.into_parts();
    let body = match inner.read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut map)) => map.remove("input").unwrap_or(Value::Null),
            Ok(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON object: {\"input\": ...}",
                );
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("the body is not valid JSON: {e}"),
                );
            }
        }
    };
    let Some(handle) = Host::handle(version.clone(), index) else {
        return no_function(name);
    };
    let function = handle.info().name().to_owned();
    let invocation = manual_invocation(handle.info(), input);
    let id = invocation.id.to_string();
    let log = inner.log.clone();
    let run = async move {
        let _permit = permit;
        let outcome = handle.invoke(invocation).await;
        log_outcome(&log, "admin", handle.info().name(), &outcome);
        outcome
    };
    if wait {
        return match run.await {
            Ok(result) => json_response(
                StatusCode::OK,
                &json!({"id": id, "function": function, "result": result.to_json()}),
            ),
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"id": id, "function": function, "error": super::public_message(&e)}),
            ),
        };
    }
    {
        let mut background = inner.background.lock().unwrap_or_else(|e| e.into_inner());
        while background.try_join_next().is_some() {}
        background.spawn(async move {
            let _ = run.await;
        });
    }
    let mut resp = empty(StatusCode::ACCEPTED);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-invocation-id", v);
    }
    resp
}

fn no_function(name: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        &format!("the app has no function named '{name}'"),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    resp
}
