//! Forwarding impls: a provider behind an `Arc`, a `Box` or a reference is
//! still a provider.
//!
//! Every extension trait of fnhost (`Executor`, `ExecutorFactory`,
//! `Middleware`, `SourceProvider`, `BuildProvider`, fnhost-deploy's `Store`)
//! gets its forwarding impls from [`forward_impls!`](crate::forward_impls),
//! invoked right below the trait with the list of its methods.

/// Writes `impl<T: Trait + ?Sized> Trait for Arc<T>` (and for `Box<T>`,
/// `&T`...) from the list of the trait's method signatures, each method
/// calling the same method of the wrapped value.
///
/// ```
/// use std::sync::Arc;
///
/// pub trait Greeter: Send + Sync {
///     fn name(&self) -> &str;
///     fn greet(&self, who: &str) -> String {
///         format!("hello {who}, from {}", self.name())
///     }
/// }
///
/// fnhost_core::forward_impls! {
///     impl<G> Greeter for [Arc<G>, Box<G>, &G] {
///         fn name(&self) -> &str;
///         fn greet(&self, who: &str) -> String;
///     }
/// }
///
/// struct Loud;
/// impl Greeter for Loud {
///     fn name(&self) -> &str { "loud" }
///     fn greet(&self, who: &str) -> String { format!("HELLO {who}") }
/// }
///
/// let shared: Arc<dyn Greeter> = Arc::new(Loud);
/// assert_eq!(shared.greet("ada"), "HELLO ada"); // not the default
/// fn takes(g: impl Greeter) -> String { g.greet("bob") }
/// assert_eq!(takes(&Loud), "HELLO bob");
/// assert_eq!(takes(Box::new(Loud)), "HELLO bob");
/// ```
///
/// Each method is written as in the trait, without its body or default:
/// `fn name<'a>(&'a self, arg: Type, ...) -> Output;` (methods take `&self`;
/// arguments are plain names).
///
/// # What guards against a method left out
///
/// - A **required** method (no default) left out of the list is a compile
///   error: the generated impl does not implement it (`E0046`).
/// - A **provided** method (with a default) left out would compile and
///   silently run the default for the wrapped value, undoing what its
///   implementation does better. Two checks catch it:
///   the generated impls carry `#[deny(clippy::missing_trait_methods)]`,
///   so `cargo clippy` fails in the crate that defines the macro's
///   invocation when it is in fnhost-core (clippy skips impls that come
///   from another crate's macro); and
///   `fnhost_core::testkit::unforwarded_methods` (feature `testkit`)
///   compares the trait's methods with the invocation's list in the source
///   text: each crate of fnhost runs it in a test for each of its traits,
///   so `cargo test` fails too.
///
/// A method of the list that the trait does not have is a compile error
/// (`E0407`), as is a signature that differs from the trait's.
///
/// # A wrapper that forwards to a field
///
/// `impl Trait for Wrapper => field { ... }` writes the impl of a type
/// that is the value of one of its fields under another name: each method
/// calls the same method of `self.field`.
///
/// ```
/// pub trait Greeter {
///     fn greet(&self, who: &str) -> String;
/// }
/// struct Plain;
/// impl Greeter for Plain {
///     fn greet(&self, who: &str) -> String { format!("hello {who}") }
/// }
/// /// `Plain` under another name.
/// struct Named {
///     inner: Plain,
/// }
/// fnhost_core::forward_impls! {
///     impl Greeter for Named => inner {
///         fn greet(&self, who: &str) -> String;
///     }
/// }
/// assert_eq!(Named { inner: Plain }.greet("ada"), "hello ada");
/// ```
#[macro_export]
macro_rules! forward_impls {
    (
        impl<$t:ident> $trait_name:ident for [$($pointer:ty),+ $(,)?] $methods:tt
    ) => {
        $( $crate::forward_impls!(@one $t, $trait_name, $pointer, $methods); )+
    };
    (
        impl $trait_name:ident for $wrapper:ty => $field:ident {
            $(
                fn $name:ident $(<$($lifetime:lifetime),+ $(,)?>)?
                    (&$($self_lifetime:lifetime)? self $(, $arg:ident: $arg_type:ty)* $(,)?)
                    $(-> $output:ty)?;
            )*
        }
    ) => {
        #[deny(clippy::missing_trait_methods)]
        impl $trait_name for $wrapper {
            $(
                #[inline]
                fn $name $(<$($lifetime),+>)?
                    (&$($self_lifetime)? self $(, $arg: $arg_type)*) $(-> $output)?
                {
                    self.$field.$name($($arg),*)
                }
            )*
        }
    };
    (@one $t:ident, $trait_name:ident, $pointer:ty, {
        $(
            fn $name:ident $(<$($lifetime:lifetime),+ $(,)?>)?
                (&$($self_lifetime:lifetime)? self $(, $arg:ident: $arg_type:ty)* $(,)?)
                $(-> $output:ty)?;
        )*
    }) => {
        #[deny(clippy::missing_trait_methods)]
        impl<$t: $trait_name + ?Sized> $trait_name for $pointer {
            $(
                #[inline]
                fn $name $(<$($lifetime),+>)?
                    (&$($self_lifetime)? self $(, $arg: $arg_type)*) $(-> $output)?
                {
                    (**self).$name($($arg),*)
                }
            )*
        }
    };
}

/// The methods of trait `trait_name` that its [`forward_impls!`]
/// invocation in the same `source` text leaves out (the check behind
/// `fnhost_core::testkit::unforwarded_methods`).
#[cfg(any(test, feature = "testkit"))]
pub(crate) fn unforwarded_methods(source: &str, trait_name: &str) -> Result<Vec<String>, String> {
    let tokens = tokens(source);
    let trait_at = (0..tokens.len().saturating_sub(1))
        .find(|&i| tokens[i] == Token::Word("trait") && tokens[i + 1] == Token::Word(trait_name))
        .ok_or_else(|| format!("no `trait {trait_name}` in the source"))?;
    let declared = methods_of_block(&tokens[trait_at..], 1);
    let forwarded = (0..tokens.len().saturating_sub(2))
        .filter(|&i| {
            tokens[i] == Token::Word("forward_impls")
                && tokens[i + 1] == Token::Punct('!')
                && tokens[i + 2] == Token::Open
        })
        .map(|i| &tokens[i + 2..])
        .find(|block| {
            // `impl<T> Trait for [...]`: the trait comes before the list.
            let header = block.iter().take_while(|t| **t != Token::Punct('['));
            header
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| *w[0] == Token::Punct('>') && *w[1] == Token::Word(trait_name))
        })
        .map(|block| methods_of_block(block, 2))
        .ok_or_else(|| format!("no `forward_impls!` invocation for {trait_name} in the source"))?;
    Ok(declared
        .into_iter()
        .filter(|m| !forwarded.contains(m))
        .map(str::to_owned)
        .collect())
}

/// The names after `fn` at `depth` inside the first brace block of
/// `tokens`.
#[cfg(any(test, feature = "testkit"))]
fn methods_of_block<'s>(tokens: &[Token<'s>], depth: usize) -> Vec<&'s str> {
    let mut names = Vec::new();
    let mut level = 0usize;
    let mut entered = false;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Open => {
                level += 1;
                entered = true;
            }
            Token::Close => {
                level = level.saturating_sub(1);
                if entered && level == 0 {
                    break;
                }
            }
            Token::Word("fn") if level == depth => {
                if let Some(Token::Word(name)) = tokens.get(i + 1) {
                    names.push(*name);
                }
            }
            _ => {}
        }
    }
    names
}

#[cfg(any(test, feature = "testkit"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'s> {
    Word(&'s str),
    Open,
    Close,
    Punct(char),
}

/// Rust source as words, braces and other punctuation; comments, string
/// and character literals are skipped.
#[cfg(any(test, feature = "testkit"))]
fn tokens(source: &str) -> Vec<Token<'_>> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &source[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if c == b'"' || is_raw_string(rest) {
            i += string_len(rest);
        } else if let Some(len) = char_literal_len(rest) {
            i += len;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            out.push(Token::Word(&rest[..len]));
            i += len;
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            match ch {
                '{' => out.push(Token::Open),
                '}' => out.push(Token::Close),
                ch if ch.is_whitespace() => {}
                ch => out.push(Token::Punct(ch)),
            }
            i += ch.len_utf8();
        }
    }
    out
}

/// Whether `text` starts with a raw string literal (`r"`, `r#"`...).
#[cfg(any(test, feature = "testkit"))]
fn is_raw_string(text: &str) -> bool {
    text.strip_prefix('r')
        .is_some_and(|raw| raw.trim_start_matches('#').starts_with('"'))
}

/// The length of the character literal (`'x'`, `'\n'`) at the start of
/// `text`; `None` for a lifetime (`'a`) or anything else.
#[cfg(any(test, feature = "testkit"))]
fn char_literal_len(text: &str) -> Option<usize> {
    let inner = text.strip_prefix('\'')?;
    if let Some(escape) = inner.strip_prefix('\\') {
        // The escaped character, then up to the closing quote (`\u{..}`).
        let first = escape.chars().next()?;
        let after = &escape[first.len_utf8()..];
        return after.find('\'').map(|end| 3 + first.len_utf8() + end);
    }
    let first = inner.chars().next()?;
    inner[first.len_utf8()..]
        .starts_with('\'')
        .then_some(2 + first.len_utf8())
}

/// The length of the string literal (plain or raw) at the start of `text`.
#[cfg(any(test, feature = "testkit"))]
fn string_len(text: &str) -> usize {
    if let Some(raw) = text.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let close = format!("\"{}", "#".repeat(hashes));
        let body = 1 + hashes + 1;
        return text[body.min(text.len())..]
            .find(&close)
            .map_or(text.len(), |end| body + end + close.len());
    }
    let mut escaped = false;
    for (i, ch) in text.char_indices().skip(1) {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return i + 1,
            _ => {}
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::unforwarded_methods;

    /// Every extension trait of fnhost-core forwards each of its methods
    /// (fnhost-deploy checks `Store` the same way).
    #[test]
    fn every_method_is_forwarded() {
        for (file, source, traits) in [
            (
                "invoke/mod.rs",
                include_str!("invoke/mod.rs"),
                &["Executor", "ExecutorFactory", "Middleware"][..],
            ),
            ("source.rs", include_str!("source.rs"), &["SourceProvider"]),
            ("build.rs", include_str!("build.rs"), &["BuildProvider"]),
        ] {
            for name in traits {
                assert_eq!(
                    unforwarded_methods(source, name),
                    Ok(Vec::new()),
                    "{file}: {name}"
                );
            }
        }
    }

    #[test]
    fn a_provided_method_left_out_is_found() {
        let source = r#"
            /// A trait { with braces in its docs }.
            pub trait Greeter: Send {
                fn name(&self) -> &str;
                fn greet(&self, who: &str) -> String {
                    let _ = ('{', '\'', "}}\"{");
                    format!("hello {who}")
                }
                fn wave<'a>(&'a self) {}
            }
            crate::forward_impls! {
                impl<G> Greeter for [Arc<G>, Box<G>] {
                    fn name(&self) -> &str;
                    fn wave<'a>(&'a self);
                }
            }
        "#;
        assert_eq!(
            unforwarded_methods(source, "Greeter"),
            Ok(vec!["greet".to_owned()])
        );
        assert!(unforwarded_methods(source, "Other").is_err());
        let without = source.replace("forward_impls", "other_macro");
        assert!(unforwarded_methods(&without, "Greeter").is_err());
    }
}
