//! Property tests: `Router::find` against a brute-force reference matcher that
//! tries every route on its own and keeps the most specific match.
#![allow(missing_docs, clippy::unwrap_used)]

use fnhost_core::route::{
    Method, MethodSet, RouteConflict, RouteMatch, RouteTemplate, Router, RouterBuilder,
};
use proptest::prelude::*;

/// Constraint of a generated parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
enum C {
    Int,
    Alpha,
    MinLen2,
}

impl C {
    fn text(self) -> &'static str {
        match self {
            C::Int => ":int",
            C::Alpha => ":alpha",
            C::MinLen2 => ":minlength(2)",
        }
    }

    fn check(self, v: &str) -> bool {
        match self {
            C::Int => v.trim().parse::<i32>().is_ok(),
            C::Alpha => v.chars().all(|c| c.is_ascii_alphabetic()),
            C::MinLen2 => v.encode_utf16().count() >= 2,
        }
    }
}

fn check(c: Option<C>, v: &str) -> bool {
    c.is_none_or(|c| c.check(v))
}

/// A generated template segment.
#[derive(Clone, Debug)]
enum Seg {
    Lit(&'static str),
    Param(Option<C>),
    Opt(Option<C>),
    /// `{p=5}` with `int`, or `{p=d}` without a constraint.
    Default {
        int: bool,
    },
    CatchAll,
    /// `{a}.{b}`
    Dot,
    /// `{a}.{b?}` (last segment only)
    DotOpt,
    /// `f{a}`
    Prefix,
}

/// A segment after normalisation, knowing whether it may be omitted.
#[derive(Clone, Debug)]
struct RSeg {
    seg: Seg,
    /// For `Default`: whether it sits in the trailing optional run.
    trailing: bool,
}

#[derive(Clone, Debug)]
struct Spec {
    segs: Vec<RSeg>,
    methods: MethodSet,
}

fn may_be_empty(s: &Seg) -> bool {
    matches!(s, Seg::Opt(_) | Seg::Default { .. } | Seg::CatchAll)
}

/// Makes a generated segment list valid: catch-all and `.{b?}` only last,
/// optional parameters only followed by segments that may be omitted.
fn normalise(raw: Vec<Seg>, methods: MethodSet) -> Spec {
    let n = raw.len();
    let mut segs: Vec<RSeg> = Vec::with_capacity(n);
    let mut rest_empty = true;
    for (k, s) in raw.into_iter().enumerate().rev() {
        let last = k + 1 == n;
        let s = match s {
            Seg::CatchAll if !last => Seg::Param(None),
            Seg::DotOpt if !last => Seg::Dot,
            Seg::Opt(c) if !rest_empty => Seg::Param(c),
            s => s,
        };
        let trailing = rest_empty;
        rest_empty = rest_empty && may_be_empty(&s);
        segs.push(RSeg { seg: s, trailing });
    }
    segs.reverse();
    Spec { segs, methods }
}

impl Spec {
    fn template(&self) -> String {
        let mut parts = Vec::new();
        for (k, s) in self.segs.iter().enumerate() {
            parts.push(match &s.seg {
                Seg::Lit(l) => (*l).to_owned(),
                Seg::Param(c) => format!("{{p{k}{}}}", c.map_or("", C::text)),
                Seg::Opt(c) => format!("{{p{k}{}?}}", c.map_or("", C::text)),
                Seg::Default { int: true } => format!("{{p{k}:int=5}}"),
                Seg::Default { int: false } => format!("{{p{k}=d}}"),
                Seg::CatchAll => format!("{{*p{k}}}"),
                Seg::Dot => format!("{{p{k}a}}.{{p{k}b}}"),
                Seg::DotOpt => format!("{{p{k}a}}.{{p{k}b?}}"),
                Seg::Prefix => format!("f{{p{k}a}}"),
            });
        }
        parts.join("/")
    }

    fn optional(s: &RSeg) -> bool {
        matches!(s.seg, Seg::Opt(_)) || matches!(s.seg, Seg::Default { .. } if s.trailing)
    }

    /// Specificity ranks, one per segment.
    fn key(&self) -> Vec<u8> {
        self.segs
            .iter()
            .map(|s| match &s.seg {
                Seg::Lit(_) => 0,
                Seg::Dot | Seg::DotOpt | Seg::Prefix => 1,
                Seg::CatchAll => 6,
                Seg::Param(c) => 2 + u8::from(c.is_none()),
                Seg::Opt(c) => 4 + u8::from(c.is_none()),
                Seg::Default { int } => {
                    let base = if Self::optional(s) { 4 } else { 2 };
                    base + u8::from(!int)
                }
            })
            .collect()
    }

    /// Normalised text: names dropped, literals lower-cased.
    fn shape(&self) -> Vec<String> {
        self.segs
            .iter()
            .map(|s| match &s.seg {
                Seg::Lit(l) => l.to_ascii_lowercase(),
                Seg::Param(c) => format!("{{{}}}", c.map_or("", C::text)),
                Seg::Opt(c) => format!("{{?{}}}", c.map_or("", C::text)),
                Seg::Default { int } => format!(
                    "{{{}{}}}",
                    if Self::optional(s) { "?" } else { "" },
                    if *int { ":int" } else { "" }
                ),
                Seg::CatchAll => "{*}".into(),
                Seg::Dot => "{}.{}".into(),
                Seg::DotOpt => "{}.{?}".into(),
                Seg::Prefix => "f{}".into(),
            })
            .collect()
    }

    /// Matches this route alone against the raw path segments.
    fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let n = path.len();
        let mut pos = 0;
        let mut out = Vec::new();
        for (k, s) in self.segs.iter().enumerate() {
            let name = format!("p{k}");
            let here = path.get(pos).map(|raw| decode(raw));
            match &s.seg {
                Seg::Lit(l) => {
                    if !here?.eq_ignore_ascii_case(l) {
                        return None;
                    }
                    pos += 1;
                }
                Seg::CatchAll => {
                    if pos < n {
                        let rest = decode(&path[pos..].join("/"));
                        if !rest.is_empty() {
                            out.push((name, rest));
                        }
                        pos = n;
                    }
                }
                Seg::Param(_) | Seg::Opt(_) | Seg::Default { .. } => {
                    let c = match &s.seg {
                        Seg::Param(c) | Seg::Opt(c) => *c,
                        _ => matches!(s.seg, Seg::Default { int: true }).then_some(C::Int),
                    };
                    match here {
                        Some(v) => {
                            if v.is_empty() || !check(c, &v) {
                                return None;
                            }
                            out.push((name, v));
                            pos += 1;
                        }
                        None if Self::optional(s) => {
                            if let Seg::Default { int } = s.seg {
                                out.push((name, if int { "5" } else { "d" }.to_owned()));
                            }
                        }
                        None => return None,
                    }
                }
                Seg::Dot | Seg::DotOpt => {
                    let v = here?;
                    let b = v.as_bytes();
                    // Rightmost '.' leaving at least one character after it.
                    let split = (!b.is_empty())
                        .then(|| b[..b.len() - 1].iter().rposition(|&c| c == b'.'))
                        .flatten()
                        .filter(|&d| d > 0);
                    match split {
                        Some(d) => {
                            out.push((format!("{name}a"), v[..d].to_owned()));
                            out.push((format!("{name}b"), v[d + 1..].to_owned()));
                        }
                        None if matches!(s.seg, Seg::DotOpt) && !v.is_empty() => {
                            out.push((format!("{name}a"), v.clone()));
                        }
                        None => return None,
                    }
                    pos += 1;
                }
                Seg::Prefix => {
                    let v = here?;
                    if v.len() < 2 || !v.as_bytes()[0].eq_ignore_ascii_case(&b'f') {
                        return None;
                    }
                    out.push((format!("{name}a"), v[1..].to_owned()));
                    pos += 1;
                }
            }
        }
        (pos == n).then_some(out)
    }
}

type Params = Vec<(String, String)>;

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Outcome in comparable form: route index and params, or the allowed set.
#[derive(Debug, PartialEq)]
enum Outcome {
    Matched(usize, Vec<(String, String)>),
    MethodNotAllowed(MethodSet),
    NotFound,
}

fn split(path: &str) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        Vec::new()
    } else {
        p.split('/').collect()
    }
}

fn reference(routes: &[Spec], method: Method, path: &str) -> Outcome {
    let segs = split(path);
    let mut best: Option<(Vec<u8>, usize, Params)> = None;
    let mut allowed = MethodSet::EMPTY;
    for (i, r) in routes.iter().enumerate() {
        let Some(params) = r.matches(&segs) else {
            continue;
        };
        allowed = allowed.union(r.methods);
        if !r.methods.contains(method) {
            continue;
        }
        let key = r.key();
        if best
            .as_ref()
            .is_none_or(|(bk, bi, _)| (&key, i) < (bk, *bi))
        {
            best = Some((key, i, params));
        }
    }
    match best {
        Some((_, i, params)) => Outcome::Matched(i, params),
        None if allowed.is_empty() => Outcome::NotFound,
        None => Outcome::MethodNotAllowed(allowed),
    }
}

fn actual(router: &Router<usize>, method: Method, path: &str) -> Outcome {
    match router.find(method, path) {
        RouteMatch::Matched { value, params } => Outcome::Matched(
            *value,
            params
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        ),
        RouteMatch::MethodNotAllowed { allowed } => Outcome::MethodNotAllowed(allowed),
        RouteMatch::NotFound => Outcome::NotFound,
    }
}

fn constraint() -> impl Strategy<Value = Option<C>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(C::Int)),
        1 => Just(Some(C::Alpha)),
        1 => Just(Some(C::MinLen2)),
    ]
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "ab", "B", "x.y"]).prop_map(Seg::Lit),
        4 => constraint().prop_map(Seg::Param),
        2 => constraint().prop_map(Seg::Opt),
        1 => any::<bool>().prop_map(|int| Seg::Default { int }),
        1 => Just(Seg::CatchAll),
        1 => Just(Seg::Dot),
        1 => Just(Seg::DotOpt),
        1 => Just(Seg::Prefix),
    ]
}

fn methods() -> impl Strategy<Value = MethodSet> {
    prop_oneof![
        1 => Just(MethodSet::EMPTY),
        3 => (1u8..4).prop_map(|bits| {
            let mut set = MethodSet::EMPTY;
            if bits & 1 != 0 {
                set.insert(Method::Get);
            }
            if bits & 2 != 0 {
                set.insert(Method::Post);
            }
            set
        }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::collection::vec(seg(), 0..4), methods()).prop_map(|(s, m)| normalise(s, m))
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a",
        "b",
        "A",
        "ab",
        "AB",
        "1",
        "42",
        "-5",
        "x.y",
        "X.Y",
        "a.b.c",
        "a.",
        ".b",
        "fa",
        "f",
        "F1",
        "%61",
        "%41b",
        "",
        "zz",
        "%C3%A9t%C3%A9",
        "x%2Fy",
    ]);
    (
        prop::collection::vec(segment, 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, lead, trail)| {
            let mut p = String::new();
            if lead {
                p.push('/');
            }
            p.push_str(&segs.join("/"));
            if trail && !segs.is_empty() {
                p.push('/');
            }
            p
        })
}

/// Builds the router and the list of accepted routes, checking conflict
/// detection against the reference on the way.
fn build(specs: &[Spec]) -> (Router<usize>, Vec<Spec>) {
    let mut builder = RouterBuilder::new();
    let mut accepted: Vec<Spec> = Vec::new();
    for s in specs {
        let text = s.template();
        let template = RouteTemplate::parse(&text)
            .unwrap_or_else(|e| panic!("generated template {text:?} rejected: {e}"));
        let names: Vec<&str> = template.parameter_names().collect();
        assert_eq!(names.len(), s.matches_names());
        let expected_conflict = accepted.iter().position(|a| {
            let all = |m: MethodSet| if m.is_empty() { MethodSet::ALL } else { m };
            a.shape() == s.shape() && all(a.methods).intersects(all(s.methods))
        });
        match builder.add(template, s.methods, accepted.len()) {
            Ok(i) => {
                assert_eq!(expected_conflict, None, "{text:?} should conflict");
                assert_eq!(i, accepted.len());
                let mut s = s.clone();
                if s.methods.is_empty() {
                    s.methods = MethodSet::ALL;
                }
                accepted.push(s);
            }
            Err(RouteConflict { existing }) => {
                assert_eq!(Some(existing), expected_conflict, "{text:?}");
            }
        }
    }
    (builder.build(), accepted)
}

impl Spec {
    fn matches_names(&self) -> usize {
        self.segs
            .iter()
            .map(|s| match s.seg {
                Seg::Lit(_) => 0,
                Seg::Dot | Seg::DotOpt => 2,
                _ => 1,
            })
            .sum()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn router_agrees_with_reference(
        specs in prop::collection::vec(spec(), 0..14),
        paths in prop::collection::vec(path(), 1..12),
    ) {
        let (router, accepted) = build(&specs);
        prop_assert_eq!(router.len(), accepted.len());
        for p in &paths {
            for method in [Method::Get, Method::Post, Method::Put] {
                let want = reference(&accepted, method, p);
                let got = actual(&router, method, p);
                prop_assert_eq!(
                    &got, &want,
                    "{} {:?} with routes {:?}",
                    method, p,
                    accepted.iter().map(Spec::template).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn every_route_matches_a_path_built_from_it(specs in prop::collection::vec(spec(), 1..10)) {
        let (router, accepted) = build(&specs);
        for spec in &accepted {
            // A path the template surely matches: fill each segment.
            let path: Vec<String> = spec
                .segs
                .iter()
                .map(|s| match &s.seg {
                    Seg::Lit(l) => l.to_uppercase(),
                    Seg::Param(_) | Seg::Opt(_) => "12".into(),
                    Seg::Default { int: true } => "7".into(),
                    Seg::Default { int: false } => "dd".into(),
                    Seg::CatchAll => "q/r".into(),
                    Seg::Dot | Seg::DotOpt => "n.e".into(),
                    Seg::Prefix => "f9".into(),
                })
                .collect();
            // "12" fails alpha; swap in a value each constraint accepts.
            let path: Vec<String> = path
                .into_iter()
                .zip(&spec.segs)
                .map(|(v, s)| match s.seg {
                    Seg::Param(Some(C::Alpha)) | Seg::Opt(Some(C::Alpha)) => "ab".into(),
                    _ => v,
                })
                .collect();
            let path = format!("/{}", path.join("/"));
            let method = spec.methods.iter().next().unwrap_or(Method::Get);
            let want = reference(&accepted, method, &path);
            prop_assert!(matches!(want, Outcome::Matched(..)), "{path:?}");
            prop_assert_eq!(actual(&router, method, &path), want);
        }
    }
}
