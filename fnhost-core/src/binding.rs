//! Bindings: the triggers, inputs and outputs a function declares in its
//! function.json.
//!
//! Common fields are typed ([`Binding::name`], [`Direction`], [`DataType`]);
//! the settings of the common binding types are typed in [`BindingKind`]; and
//! every property as written is kept in [`Binding::properties`], so a binding
//! of a type fnhost does not know keeps all it says. Property names compare
//! case-insensitively, as in the host.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::diag::{Code, DocReporter};
use crate::json::Seg;
use crate::route::{Method, MethodSet};

/// Which way data flows through a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the function (triggers and input bindings).
    In,
    /// Out of the function.
    Out,
    /// Both ways.
    InOut,
}

impl Direction {
    /// `"in"`, `"out"` or `"inout"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::InOut => "inout",
        }
    }
}

impl FromStr for Direction {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("in") {
            Ok(Direction::In)
        } else if s.eq_ignore_ascii_case("out") {
            Ok(Direction::Out)
        } else if s.eq_ignore_ascii_case("inout") {
            Ok(Direction::InOut)
        } else {
            Err(InvalidValue(s.to_owned()))
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the value of a binding is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Text.
    String,
    /// Bytes.
    Binary,
    /// A stream of bytes.
    Stream,
}

impl FromStr for DataType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "string" => Ok(DataType::String),
            "binary" => Ok(DataType::Binary),
            "stream" => Ok(DataType::Stream),
            _ => Err(InvalidValue(s.to_owned())),
        }
    }
}

/// Whether a trigger delivers one item or a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cardinality {
    /// One item per invocation.
    One,
    /// A batch per invocation.
    Many,
}

impl FromStr for Cardinality {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Cardinality::One),
            "many" => Ok(Cardinality::Many),
            _ => Err(InvalidValue(s.to_owned())),
        }
    }
}

/// Who may call an HTTP-triggered function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthLevel {
    /// Anyone.
    Anonymous,
    /// Holders of a function key, the host key or the master key (the default).
    #[default]
    Function,
    /// Holders of the master key.
    Admin,
}

impl AuthLevel {
    /// `"anonymous"`, `"function"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::Anonymous => "anonymous",
            AuthLevel::Function => "function",
            AuthLevel::Admin => "admin",
        }
    }
}

impl FromStr for AuthLevel {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "anonymous" => Ok(AuthLevel::Anonymous),
            "function" => Ok(AuthLevel::Function),
            "admin" => Ok(AuthLevel::Admin),
            _ => Err(InvalidValue(s.to_owned())),
        }
    }
}

impl fmt::Display for AuthLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not one of the accepted words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid value")]
pub struct InvalidValue(pub String);

/// An HTTP trigger's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// Who may call it.
    pub auth_level: AuthLevel,
    /// The methods it answers; all of them when function.json lists none.
    pub methods: MethodSet,
    /// The route template as written, without the route prefix; `None` means
    /// the function name.
    pub route: Option<String>,
}

/// A timer trigger's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerTrigger {
    /// The schedule as written (may contain `%Setting%`).
    pub schedule: String,
    /// Run once when the host starts.
    pub run_on_startup: bool,
    /// Keep schedule status (accepted, not used by fnhost).
    pub use_monitor: Option<bool>,
}

/// A queue trigger's or queue output's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    /// The queue name (may contain expressions).
    pub queue_name: Option<String>,
    /// The name of the app setting with the connection.
    pub connection: Option<String>,
}

/// A blob trigger's or blob binding's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobBinding {
    /// The blob path, such as `samples/{name}`.
    pub path: Option<String>,
    /// The name of the app setting with the connection.
    pub connection: Option<String>,
}

/// An event hub trigger's or output's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubBinding {
    /// The event hub (`eventHubName`, or the older `path`).
    pub event_hub_name: Option<String>,
    /// The consumer group.
    pub consumer_group: Option<String>,
    /// The name of the app setting with the connection.
    pub connection: Option<String>,
}

/// A Service Bus trigger's or output's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBusBinding {
    /// The queue, for a queue.
    pub queue_name: Option<String>,
    /// The topic, for a topic.
    pub topic_name: Option<String>,
    /// The subscription of the topic.
    pub subscription_name: Option<String>,
    /// The name of the app setting with the connection.
    pub connection: Option<String>,
}

/// A Cosmos DB trigger's or binding's settings, in the v4 names with the v3
/// names accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosDbBinding {
    /// `connection` (v4) or `connectionStringSetting` (v3).
    pub connection: Option<String>,
    /// The database.
    pub database_name: Option<String>,
    /// `containerName` (v4) or `collectionName` (v3).
    pub container_name: Option<String>,
    /// `leaseContainerName` (v4) or `leaseCollectionName` (v3).
    pub lease_container_name: Option<String>,
}

/// A table binding's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBinding {
    /// The table.
    pub table_name: Option<String>,
    /// The partition key.
    pub partition_key: Option<String>,
    /// The row key.
    pub row_key: Option<String>,
    /// The name of the app setting with the connection.
    pub connection: Option<String>,
}

/// What a binding is, with the settings of the common types typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingKind {
    /// `httpTrigger`.
    HttpTrigger(HttpTrigger),
    /// `http` (the HTTP response).
    Http,
    /// `timerTrigger`.
    TimerTrigger(TimerTrigger),
    /// `queueTrigger`.
    QueueTrigger(QueueBinding),
    /// `queue`.
    Queue(QueueBinding),
    /// `blobTrigger`.
    BlobTrigger(BlobBinding),
    /// `blob`.
    Blob(BlobBinding),
    /// `eventHubTrigger`.
    EventHubTrigger(EventHubBinding),
    /// `eventHub`.
    EventHub(EventHubBinding),
    /// `serviceBusTrigger`.
    ServiceBusTrigger(ServiceBusBinding),
    /// `serviceBus`.
    ServiceBus(ServiceBusBinding),
    /// `cosmosDBTrigger`.
    CosmosDbTrigger(CosmosDbBinding),
    /// `cosmosDB`.
    CosmosDb(CosmosDbBinding),
    /// `eventGridTrigger`.
    EventGridTrigger,
    /// `table`.
    Table(TableBinding),
    /// `manualTrigger`.
    ManualTrigger,
    /// Any other type; its settings are in [`Binding::properties`].
    Other,
}

/// One binding of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The name the function uses for it (`$return` for the return value).
    pub name: String,
    /// The type as written, such as `httpTrigger`.
    pub type_name: String,
    /// Which way data flows.
    pub direction: Direction,
    /// How the value is handed over, when set.
    pub data_type: Option<DataType>,
    /// One item or a batch, when set.
    pub cardinality: Option<Cardinality>,
    /// The typed settings.
    pub kind: BindingKind,
    /// Every property as written, including the ones above.
    pub properties: Map<String, Value>,
}

impl Binding {
    /// Whether this binding triggers the function: its type ends in
    /// `trigger` (in any case) and its direction is `in`.
    pub fn is_trigger(&self) -> bool {
        is_trigger_type(&self.type_name) && self.direction == Direction::In
    }

    /// Whether this is the function's return value.
    pub fn is_return(&self) -> bool {
        self.name == "$return"
    }

    /// A property by name, compared case-insensitively.
    pub fn property(&self, key: &str) -> Option<&Value> {
        property(&self.properties, key)
    }

    /// A string property by name, compared case-insensitively.
    pub fn str_property(&self, key: &str) -> Option<&str> {
        self.property(key).and_then(Value::as_str)
    }

    /// The HTTP trigger settings, if this is one.
    pub fn http_trigger(&self) -> Option<&HttpTrigger> {
        match &self.kind {
            BindingKind::HttpTrigger(h) => Some(h),
            _ => None,
        }
    }

    /// The timer trigger settings, if this is one.
    pub fn timer_trigger(&self) -> Option<&TimerTrigger> {
        match &self.kind {
            BindingKind::TimerTrigger(t) => Some(t),
            _ => None,
        }
    }
}

/// Whether a binding type names a trigger (ends in `trigger`, any case).
pub fn is_trigger_type(type_name: &str) -> bool {
    type_name.len() >= 7
        && type_name.as_bytes()[type_name.len() - 7..].eq_ignore_ascii_case(b"trigger")
}

/// Whether `name` is a valid binding name: an ASCII letter then up to 127
/// ASCII letters or digits, or `$return`.
pub fn is_valid_binding_name(name: &str) -> bool {
    if name == "$return" {
        return true;
    }
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphabetic()
        && bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// Looks a property up, exactly first and then ignoring ASCII case.
///
/// Binding objects are small, so one linear pass beats hashing the key.
pub(crate) fn property<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    let mut folded = None;
    for (k, v) in map {
        if k.len() != key.len() {
            continue;
        }
        if k == key {
            return Some(v);
        }
        if folded.is_none() && k.eq_ignore_ascii_case(key) {
            folded = Some(v);
        }
    }
    folded
}

fn string_prop(map: &Map<String, Value>, key: &str) -> Option<String> {
    property(map, key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn first_string_prop(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| string_prop(map, k))
}

/// Parses the binding at `bindings[index]`, reporting its problems.
///
/// Returns `None` when the binding is unusable (not an object, no type);
/// otherwise a binding, even when some of its values were reported.
pub(crate) fn parse_binding(
    value: Value,
    index: usize,
    rep: &mut DocReporter<'_>,
) -> Option<Binding> {
    let at = |key: &'static str| [Seg::Key("bindings"), Seg::Index(index), Seg::Key(key)];
    let here = [Seg::Key("bindings"), Seg::Index(index)];
    let Value::Object(owned) = value else {
        rep.error(
            Code::WrongType,
            &here,
            format!("binding {index} must be a JSON object with at least \"type\", \"direction\" and \"name\""),
        );
        return None;
    };

    let map = &owned;
    let type_name = match property(map, "type") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
        Some(_) => {
            rep.error(
                Code::BindingType,
                &at("type"),
                format!("binding {index} has an invalid \"type\": write the binding type as a string, such as \"httpTrigger\""),
            );
            return None;
        }
        None => {
            rep.error(
                Code::BindingType,
                &here,
                format!(
                    "binding {index} has no \"type\": add one, such as \"httpTrigger\" or \"queue\""
                ),
            );
            return None;
        }
    };

    let direction = match property(map, "direction") {
        None | Some(Value::Null) => Direction::In,
        Some(Value::String(d)) => {
            match d.parse() {
                Ok(d) => d,
                Err(_) => {
                    rep.error(
                    Code::BindingDirection,
                    &at("direction"),
                    format!("'{d}' is not a valid binding direction: use \"in\", \"out\" or \"inout\""),
                );
                    Direction::In
                }
            }
        }
        Some(other) => {
            rep.error(
                Code::BindingDirection,
                &at("direction"),
                format!(
                    "'{other}' is not a valid binding direction: use \"in\", \"out\" or \"inout\""
                ),
            );
            Direction::In
        }
    };

    let name = match property(map, "name") {
        Some(Value::String(n)) => n.clone(),
        _ => String::new(),
    };
    if name.is_empty() {
        rep.error(
            Code::BindingName,
            &here,
            format!("The binding name is invalid: binding {index} ({type_name}) has no \"name\"; add one such as \"req\" (letters and digits, starting with a letter)"),
        );
    } else if !is_valid_binding_name(&name) {
        rep.error(
            Code::BindingName,
            &at("name"),
            format!("The binding name {name} is invalid: use an ASCII letter followed by letters or digits (no '_' or '-'), at most 128 characters, or \"$return\""),
        );
    } else if name == "$return" && direction != Direction::Out {
        rep.error(
            Code::ReturnDirection,
            &at("direction"),
            "a \"$return\" binding must have direction \"out\"",
        );
    }

    let data_type = match property(map, "dataType") {
        Some(Value::String(s)) => {
            match s.parse() {
                Ok(d) => Some(d),
                Err(_) => {
                    rep.warning(
                    Code::BindingValue,
                    &at("dataType"),
                    format!("'{s}' is not a known dataType: use \"string\", \"binary\" or \"stream\""),
                );
                    None
                }
            }
        }
        _ => None,
    };
    let cardinality = match property(map, "cardinality") {
        Some(Value::String(s)) => match s.parse() {
            Ok(c) => Some(c),
            Err(_) => {
                rep.warning(
                    Code::BindingValue,
                    &at("cardinality"),
                    format!("'{s}' is not a known cardinality: use \"one\" or \"many\""),
                );
                None
            }
        },
        _ => None,
    };

    let kind = parse_kind(&type_name, map, index, rep);
    Some(Binding {
        name,
        type_name,
        direction,
        data_type,
        cardinality,
        kind,
        properties: owned,
    })
}

fn parse_kind(
    type_name: &str,
    map: &Map<String, Value>,
    index: usize,
    rep: &mut DocReporter<'_>,
) -> BindingKind {
    let at = |key: &'static str| [Seg::Key("bindings"), Seg::Index(index), Seg::Key(key)];
    let lower = type_name.to_ascii_lowercase();
    let queue = || QueueBinding {
        queue_name: string_prop(map, "queueName"),
        connection: string_prop(map, "connection"),
    };
    let blob = || BlobBinding {
        path: string_prop(map, "path"),
        connection: string_prop(map, "connection"),
    };
    let event_hub = || EventHubBinding {
        event_hub_name: first_string_prop(map, &["eventHubName", "path"]),
        consumer_group: string_prop(map, "consumerGroup"),
        connection: string_prop(map, "connection"),
    };
    let service_bus = || ServiceBusBinding {
        queue_name: string_prop(map, "queueName"),
        topic_name: string_prop(map, "topicName"),
        subscription_name: string_prop(map, "subscriptionName"),
        connection: string_prop(map, "connection"),
    };
    let cosmos = || CosmosDbBinding {
        connection: first_string_prop(map, &["connection", "connectionStringSetting"]),
        database_name: string_prop(map, "databaseName"),
        container_name: first_string_prop(map, &["containerName", "collectionName"]),
        lease_container_name: first_string_prop(
            map,
            &["leaseContainerName", "leaseCollectionName"],
        ),
    };
    match lower.as_str() {
        "httptrigger" => {
            let auth_level = match property(map, "authLevel") {
                None | Some(Value::Null) => AuthLevel::default(),
                Some(Value::String(s)) => s.parse().unwrap_or_else(|_| {
                    rep.error(
                        Code::BindingValue,
                        &at("authLevel"),
                        format!("'{s}' is not a valid authLevel: use \"anonymous\", \"function\" or \"admin\""),
                    );
                    AuthLevel::default()
                }),
                Some(other) => {
                    rep.error(
                        Code::BindingValue,
                        &at("authLevel"),
                        format!("'{other}' is not a valid authLevel: use \"anonymous\", \"function\" or \"admin\""),
                    );
                    AuthLevel::default()
                }
            };
            let methods = match property(map, "methods") {
                None | Some(Value::Null) => MethodSet::ALL,
                Some(Value::Array(items)) if items.is_empty() => MethodSet::ALL,
                Some(Value::Array(items)) => {
                    let mut set = MethodSet::EMPTY;
                    for (i, item) in items.iter().enumerate() {
                        match item.as_str().map(str::parse::<Method>) {
                            Some(Ok(m)) => set.insert(m),
                            _ => rep.error(
                                Code::BindingValue,
                                &[
                                    Seg::Key("bindings"),
                                    Seg::Index(index),
                                    Seg::Key("methods"),
                                    Seg::Index(i),
                                ],
                                format!("{item} is not an HTTP method: use get, post, put, delete, head, patch, options or trace"),
                            ),
                        }
                    }
                    if set.is_empty() { MethodSet::ALL } else { set }
                }
                Some(_) => {
                    rep.error(
                        Code::BindingValue,
                        &at("methods"),
                        "\"methods\" must be an array of HTTP methods, such as [\"get\", \"post\"]",
                    );
                    MethodSet::ALL
                }
            };
            let route = match property(map, "route") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) if r.trim().is_empty() => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => {
                    rep.error(
                        Code::BindingValue,
                        &at("route"),
                        "\"route\" must be a string route template, such as \"products/{id:int}\"",
                    );
                    None
                }
            };
            BindingKind::HttpTrigger(HttpTrigger {
                auth_level,
                methods,
                route,
            })
        }
        "http" => BindingKind::Http,
        "timertrigger" => {
            let schedule = match property(map, "schedule") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                _ => {
                    rep.error(
                        Code::BindingMissing,
                        &[Seg::Key("bindings"), Seg::Index(index)],
                        "a timerTrigger needs a \"schedule\": an NCRONTAB expression with 6 fields such as \"0 */5 * * * *\", or a TimeSpan such as \"00:05:00\"",
                    );
                    String::new()
                }
            };
            let run_on_startup = match property(map, "runOnStartup") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    rep.error(
                        Code::BindingValue,
                        &at("runOnStartup"),
                        format!("\"runOnStartup\" must be true or false, not {other}"),
                    );
                    false
                }
            };
            let use_monitor = property(map, "useMonitor").and_then(Value::as_bool);
            BindingKind::TimerTrigger(TimerTrigger {
                schedule,
                run_on_startup,
                use_monitor,
            })
        }
        "queuetrigger" => BindingKind::QueueTrigger(queue()),
        "queue" => BindingKind::Queue(queue()),
        "blobtrigger" => BindingKind::BlobTrigger(blob()),
        "blob" => BindingKind::Blob(blob()),
        "eventhubtrigger" => BindingKind::EventHubTrigger(event_hub()),
        "eventhub" => BindingKind::EventHub(event_hub()),
        "servicebustrigger" => BindingKind::ServiceBusTrigger(service_bus()),
        "servicebus" => BindingKind::ServiceBus(service_bus()),
        "cosmosdbtrigger" => BindingKind::CosmosDbTrigger(cosmos()),
        "cosmosdb" => BindingKind::CosmosDb(cosmos()),
        "eventgridtrigger" => BindingKind::EventGridTrigger,
        "table" => BindingKind::Table(TableBinding {
            table_name: string_prop(map, "tableName"),
            partition_key: string_prop(map, "partitionKey"),
            row_key: string_prop(map, "rowKey"),
            connection: string_prop(map, "connection"),
        }),
        "manualtrigger" => BindingKind::ManualTrigger,
        _ => BindingKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_names_follow_the_host_pattern() {
        for ok in ["req", "res", "$return", "myBlob2", "A"] {
            assert!(is_valid_binding_name(ok), "{ok}");
        }
        for bad in ["", "my_name", "my-name", "2abc", "$Return", "naïve", "a b"] {
            assert!(!is_valid_binding_name(bad), "{bad}");
        }
        assert!(is_valid_binding_name(&"a".repeat(128)));
        assert!(!is_valid_binding_name(&"a".repeat(129)));
    }

    #[test]
    fn trigger_types_end_in_trigger_in_any_case() {
        assert!(is_trigger_type("httpTrigger"));
        assert!(is_trigger_type("KAFKATRIGGER"));
        assert!(!is_trigger_type("http"));
        assert!(!is_trigger_type("trigge"));
    }
}
