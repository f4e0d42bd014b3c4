//! HTTP methods and sets of them.

use std::fmt;
use std::str::FromStr;

/// An HTTP method a route can be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
}

impl Method {
    /// Every method, in the order [`MethodSet::iter`] yields them.
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Head,
        Method::Patch,
        Method::Options,
        Method::Trace,
    ];

    /// The method's upper-case name, e.g. `"GET"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
        }
    }

    const fn bit(self) -> u8 {
        1u8 << (self as u8)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownMethod;

    /// Parses a method name, ignoring ASCII case (`"get"`, `"Get"`, `"GET"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// The error of parsing a [`Method`] from a name that is not one of the eight
/// supported methods; holds the name as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMethod(pub String);

impl fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown HTTP method '{}' (expected one of GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS, TRACE)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMethod {}

/// A set of [`Method`]s, stored as a bit set.
///
/// The default value is the empty set. Displayed as a comma-separated list of
/// names (`"GET, POST"`), suitable for an `Allow` header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MethodSet(u8);

impl MethodSet {
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);
    /// The set of all eight methods.
    pub const ALL: MethodSet = MethodSet(0xFF);

    /// Adds `method` to the set.
    pub fn insert(&mut self, method: Method) {
        self.0 |= method.bit();
    }

    /// Returns the set with `method` added.
    #[must_use]
    pub const fn with(self, method: Method) -> Self {
        MethodSet(self.0 | method.bit())
    }

    /// Whether `method` is in the set.
    pub const fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }

    /// Whether the two sets have a method in common.
    pub const fn intersects(self, other: MethodSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The methods in either set.
    #[must_use]
    pub const fn union(self, other: MethodSet) -> Self {
        MethodSet(self.0 | other.0)
    }

    /// Whether the set holds no method.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the set holds all eight methods.
    pub const fn is_all(self) -> bool {
        self.0 == 0xFF
    }

    /// The methods in the set, in the order of [`Method::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl From<Method> for MethodSet {
    fn from(method: Method) -> Self {
        MethodSet::EMPTY.with(method)
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        let mut set = MethodSet::EMPTY;
        set.extend(iter);
        set
    }
}

impl Extend<Method> for MethodSet {
    fn extend<I: IntoIterator<Item = Method>>(&mut self, iter: I) {
        for m in iter {
            self.insert(m);
        }
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // ----- methods -----

    #[test]
    fn methods_parse_and_display() {
        assert_eq!("get".parse::<Method>().unwrap(), Method::Get);
        assert_eq!("Options".parse::<Method>().unwrap(), Method::Options);
        assert_eq!(
            "FETCH".parse::<Method>(),
            Err(UnknownMethod("FETCH".into()))
        );
        assert!(
            UnknownMethod("x".into())
                .to_string()
                .contains("unknown HTTP method 'x'")
        );
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
    }

    #[test]
    fn method_sets() {
        let s: MethodSet = [Method::Post, Method::Get].into_iter().collect();
        assert_eq!(s.to_string(), "GET, POST");
        assert_eq!(format!("{s:?}"), "{Get, Post}");
        assert!(s.contains(Method::Get) && !s.contains(Method::Put));
        assert!(s.intersects(MethodSet::from(Method::Post)));
        assert!(!s.intersects(MethodSet::EMPTY.with(Method::Put)));
        assert_eq!(s.union(Method::Put.into()).iter().count(), 3);
        assert!(MethodSet::default().is_empty());
        assert!(MethodSet::ALL.is_all() && !s.is_all());
        let mut m = MethodSet::EMPTY;
        for x in Method::ALL {
            m.insert(x);
        }
        assert_eq!(m, MethodSet::ALL);
        assert_eq!(MethodSet::EMPTY.to_string(), "");
    }
}
