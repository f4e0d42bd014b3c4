//! Binding expressions in queue names and blob paths: `%Setting%`,
//! `{rand-guid}`, `{DateTime}`, `{sys.*}` and trigger data such as
//! `{OrderId}` or `{Order.Id}`.

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use fnhost_core::app::AppSettings;
use serde_json::{Map, Value};

/// What the expressions of one invocation resolve against. `{rand-guid}`
/// and `{DateTime}` have one value per invocation, as on Azure.
#[derive(Debug)]
pub struct BindingContext<'a> {
    /// The trigger data: metadata and a JSON body's properties.
    pub data: &'a Map<String, Value>,
    /// The app settings, for `%Setting%`.
    pub settings: &'a AppSettings,
    /// The function's name (`{sys.MethodName}`).
    pub function: &'a str,
    /// The invocation's time.
    pub now: DateTime<Utc>,
    /// The invocation's random GUID (hyphenated, lower case).
    pub guid: String,
}

impl BindingContext<'_> {
    /// `template` with its `%Setting%`s and `{...}` expressions replaced;
    /// `{{` and `}}` are literal braces. An expression without a value, or
    /// whose value is an object, is an error naming it.
    pub fn resolve(&self, template: &str) -> Result<String, String> {
        let text = self.settings.resolve(template).map_err(|e| e.to_string())?;
        let mut out = String::with_capacity(text.len() + 16);
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("'{template}' has a '{{' without its '}}'"));
                    };
                    let expr = &rest[..end];
                    out.push_str(&self.expression(expr.trim())?);
                    // Skip the expression and its closing brace.
                    while let Some((j, _)) = chars.peek() {
                        if *j > i + end + 1 {
                            break;
                        }
                        chars.next();
                    }
                }
                '}' => return Err(format!("'{template}' has a '}}' without its '{{'")),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    fn expression(&self, expr: &str) -> Result<String, String> {
        let (name, format) = match expr.split_once(':') {
            Some((n, f)) => (n.trim(), Some(f)),
            None => (expr, None),
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "rand-guid" | "sys.randguid" => return guid(&self.guid, format),
            "datetime" => {
                return Ok(net_format(
                    self.now,
                    format.unwrap_or("yyyy-MM-ddTHH-mm-ssZ"),
                ));
            }
            "sys.utcnow" => {
                return Ok(match format {
                    Some(f) => net_format(self.now, f),
                    None => self
                        .now
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                });
            }
            "sys.methodname" => return Ok(self.function.to_owned()),
            _ => {}
        }
        let mut value: Option<&Value> = None;
        for (depth, part) in name.split('.').enumerate() {
            let map = match (depth, value) {
                (0, _) => Some(self.data),
                (_, Some(Value::Object(m))) => Some(m),
                _ => None,
            };
            value = map.and_then(|m| {
                m.get(part).or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(part))
                        .map(|(_, v)| v)
                })
            });
        }
        match value {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            Some(Value::Null) | None => Err(format!(
                "the binding expression {{{name}}} has no value: the trigger data has no '{name}'"
            )),
            Some(_) => Err(format!(
                "the binding expression {{{name}}} names an object or array; only text, numbers and booleans can be used"
            )),
        }
    }
}

/// A GUID in a .NET format: `D` (the default), `N`, `B` or `P`.
fn guid(hyphenated: &str, format: Option<&str>) -> Result<String, String> {
    Ok(match format.map(str::trim) {
        None | Some("D" | "d" | "") => hyphenated.to_owned(),
        Some("N" | "n") => hyphenated.replace('-', ""),
        Some("B" | "b") => format!("{{{hyphenated}}}"),
        Some("P" | "p") => format!("({hyphenated})"),
        Some(other) => {
            return Err(format!(
                "{{rand-guid:{other}}} has an unknown format: use D, N, B or P"
            ));
        }
    })
}

/// A time in a .NET custom format: `yyyy`, `yy`, `MM`, `M`, `dd`, `d`,
/// `HH`, `H`, `hh`, `h`, `mm`, `m`, `ss`, `s`, `f`... (fractions), `tt`;
/// `'quoted'` text and `\x` are literal, as is any other character.
pub(crate) fn net_format(t: DateTime<Utc>, format: &str) -> String {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::with_capacity(format.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let pad = |n: u32, width: usize| format!("{n:0width$}");
        match c {
            'y' => {
                let y = t.year().unsigned_abs();
                out.push_str(&if run <= 2 {
                    pad(y % 100, run)
                } else {
                    pad(y, run)
                });
            }
            'M' if run <= 2 => out.push_str(&pad(t.month(), run)),
            'd' if run <= 2 => out.push_str(&pad(t.day(), run)),
            'H' => out.push_str(&pad(t.hour(), run.min(2))),
            'h' => {
                let h = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                out.push_str(&pad(h, run.min(2)));
            }
            'm' => out.push_str(&pad(t.minute(), run.min(2))),
            's' => out.push_str(&pad(t.second(), run.min(2))),
            'f' | 'F' => {
                let digits = format!("{:09}", t.nanosecond() % 1_000_000_000);
                out.push_str(&digits[..run.min(7)]);
            }
            't' => {
                let am = if t.hour() < 12 { "AM" } else { "PM" };
                out.push_str(&am[..run.min(2)]);
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|x| *x == c)
                    .map_or(chars.len(), |p| i + 1 + p);
                out.extend(&chars[i + 1..end]);
                i = end + 1;
                continue;
            }
            '\\' => {
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                }
                i += 2;
                continue;
            }
            _ => {
                for _ in 0..run {
                    out.push(c);
                }
            }
        }
        i += run;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use serde_json::json;

    fn ctx<'a>(data: &'a Map<String, Value>, settings: &'a AppSettings) -> BindingContext<'a> {
        BindingContext {
            data,
            settings,
            function: "Orders",
            now: Utc
                .with_ymd_and_hms(2018, 2, 16, 17, 59, 55)
                .single()
                .unwrap(),
            guid: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        }
    }

    #[test]
    fn expressions() {
        let data = json!({"OrderId": 42, "Customer": {"Name": "ada"}, "ok": true, "list": [1]});
        let data = data.as_object().unwrap();
        let mut settings = AppSettings::new();
        settings.set("OUT", "archive");
        let c = ctx(data, &settings);
        assert_eq!(
            c.resolve("%OUT%/{orderid}-{Customer.Name}-{ok}.json")
                .unwrap(),
            "archive/42-ada-true.json"
        );
        assert_eq!(
            c.resolve("x/{rand-guid}").unwrap(),
            "x/0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        assert_eq!(
            c.resolve("{rand-guid:N}").unwrap(),
            "0f8fad5bd9cb469fa16570867728950e"
        );
        assert_eq!(
            c.resolve("{sys.RandGuid}").unwrap(),
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        assert_eq!(c.resolve("{DateTime}").unwrap(), "2018-02-16T17-59-55Z");
        assert_eq!(
            c.resolve("{DateTime:yyyy/MM/dd}/{sys.MethodName}").unwrap(),
            "2018/02/16/Orders"
        );
        assert_eq!(c.resolve("a{{b}}").unwrap(), "a{b}");
        assert!(c.resolve("{Missing}").unwrap_err().contains("Missing"));
        assert!(c.resolve("{list}").unwrap_err().contains("object or array"));
        assert!(c.resolve("{Customer}").is_err());
        assert!(c.resolve("%NOPE%/x").unwrap_err().contains("NOPE"));
        assert!(c.resolve("a{b").is_err());
    }

    #[test]
    fn net_formats() {
        let t = Utc.with_ymd_and_hms(2024, 7, 5, 8, 3, 9).single().unwrap();
        assert_eq!(net_format(t, "yyyyMMdd-HHmmss"), "20240705-080309");
        assert_eq!(net_format(t, "yy-M-d h tt"), "24-7-5 8 AM");
        assert_eq!(net_format(t, "'T'HH\\h"), "T08h");
    }
}
