//! Route templates and the compiled router.
//!
//! An HTTP-triggered function is reached through a *route template* written in
//! the ASP.NET Core syntax that Azure Functions uses for the `route` property
//! of an `httpTrigger` binding, prefixed (by the app model) with the host's
//! route prefix:
//!
//! ```text
//! api/products/{category:alpha}/{id:int?}
//! ```
//!
//! [`RouteTemplate::parse`] understands:
//!
//! * literal segments (`products`), matched ASCII case-insensitively;
//! * parameters `{name}`, optional parameters `{name?}` (trailing only),
//!   defaults `{name=value}`, catch-alls `{*rest}` / `{**rest}` (last segment);
//! * constraints, chained with `:`: `int`, `long`, `bool`, `guid`, `double`,
//!   `decimal`, `datetime`, `alpha`, `required`, `minlength(n)`,
//!   `maxlength(n)`, `length(n)`, `length(a,b)`, `min(n)`, `max(n)`,
//!   `range(a,b)` and `regex(expr)`;
//! * complex segments mixing literals and parameters, such as `{name}.{ext?}`
//!   or `file{id}.txt`;
//! * `{{` and `}}` for literal braces.
//!
//! A [`RouterBuilder`] compiles many templates into a [`Router`], a tree keyed
//! by literal segment, so that [`Router::find`] costs about the same with ten
//! routes as with thousands. When several routes match a path, the most
//! specific wins: comparing segment by segment from the left, a literal beats
//! a complex segment, which beats a constrained parameter, then a plain
//! parameter, an optional constrained parameter, a plain optional parameter
//! and finally a catch-all; a template that ends earlier beats one that goes
//! on; remaining ties go to the route registered first.
//!
//! ```
//! use fnhost_core::route::{Method, MethodSet, RouteMatch, RouteTemplate, RouterBuilder};
//!
//! let mut builder = RouterBuilder::new();
//! let get = MethodSet::EMPTY.with(Method::Get);
//! builder.add(RouteTemplate::parse("api/items/{id:int}")?, get, "by id")?;
//! builder.add(RouteTemplate::parse("api/items/{name}")?, get, "by name")?;
//! let router = builder.build();
//!
//! match router.find(Method::Get, "/api/items/42") {
//!     RouteMatch::Matched { value, params } => {
//!         assert_eq!(*value, "by id");
//!         assert_eq!(params.get("ID"), Some("42"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(matches!(
//!     router.find(Method::Post, "/api/items/42"),
//!     RouteMatch::MethodNotAllowed { .. }
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The module a part: `method` ([`Method`], [`MethodSet`]), `constraint`
//! (the 17 parameter constraints), `template` (parsing and checking a
//! template: [`RouteTemplate`], [`RouteError`]), `matching` (matching one
//! segment, percent-decoding, [`RouteParams`]), `router` (the compiled
//! tree: [`RouterBuilder`], [`Router`], [`RouteMatch`], [`RouteConflict`]).

mod constraint;
mod matching;
mod method;
mod router;
mod template;

pub use matching::RouteParams;
pub use method::{Method, MethodSet, UnknownMethod};
pub use router::{RouteConflict, RouteMatch, Router, RouterBuilder};
pub use template::{RouteError, RouteTemplate};

/// Helpers shared by the route modules' tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testing {
    use super::*;

    pub(super) fn t(s: &str) -> RouteTemplate {
        RouteTemplate::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e} at {}", e.offset))
    }

    pub(super) fn err(s: &str) -> RouteError {
        match RouteTemplate::parse(s) {
            Ok(_) => panic!("{s:?} should not parse"),
            Err(e) => e,
        }
    }

    pub(super) fn router(routes: &[(&str, &[Method])]) -> Router<usize> {
        let mut b = RouterBuilder::new();
        for (i, (tpl, methods)) in routes.iter().enumerate() {
            let got = b.add(t(tpl), methods.iter().copied().collect(), i).unwrap();
            assert_eq!(got, i);
        }
        b.build()
    }

    /// Index of the matched route and its params as `name=value` pairs.
    pub(super) fn hit(
        r: &Router<usize>,
        method: Method,
        path: &str,
    ) -> Option<(usize, Vec<String>)> {
        match r.find(method, path) {
            RouteMatch::Matched { value, params } => Some((
                *value,
                params.iter().map(|(n, v)| format!("{n}={v}")).collect(),
            )),
            _ => None,
        }
    }

    pub(super) fn idx(r: &Router<usize>, path: &str) -> Option<usize> {
        hit(r, Method::Get, path).map(|h| h.0)
    }

    pub(super) fn accepts(constraint: &str, value: &str) -> bool {
        let r = router(&[(&format!("{{v:{constraint}}}"), &[])]);
        idx(&r, &format!("/{value}")).is_some()
    }

    /// Checks that `constraint` accepts every value of `accepted` and none
    /// of `rejected`.
    pub(super) fn check_constraint(constraint: &str, accepted: &[&str], rejected: &[&str]) {
        for v in accepted {
            assert!(accepts(constraint, v), "{constraint} rejects {v}");
        }
        for v in rejected {
            assert!(!accepts(constraint, v), "{constraint} accepts {v}");
        }
    }

    /// Checks which route `r` picks for each path (`None`: none).
    pub(super) fn check_picks(r: &Router<usize>, cases: &[(&str, Option<usize>)]) {
        for &(path, want) in cases {
            assert_eq!(idx(r, path), want, "{path}");
        }
    }
}
