//! `[[channels]]` and `[[teams]]` of the configuration: where each team's
//! incident transitions go, and its escalation chain. Validated as a whole
//! (every route names a channel that exists, every value is known), with
//! the key of each mistake named. Secrets (webhook URLs, routing keys,
//! passwords) are given inline or, better, as the name of an environment
//! variable (`*_env`), and are never printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// A secret value: printed as `<secret>`, whatever it holds. A secret
/// named by an environment variable that is not set is kept as such
/// instead of failing the configuration: commands that do not send
/// (`replay`, `check`, `serve`, …) work without the deployment's secrets,
/// `check` and `run` name the variable, and a delivery through the channel
/// ends `dead` naming it (`deliveries retry` once it is set).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Result<String, String>);

/// A secret whose environment variable is not set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the environment variable {variable} is not set")]
pub struct SecretUnset {
    /// The variable.
    pub variable: String,
}

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> Result<&str, SecretUnset> {
        self.0.as_deref().map_err(|variable| SecretUnset { variable: variable.clone() })
    }

    /// The environment variable that should hold it, when it is not set.
    pub fn unset_variable(&self) -> Option<&str> {
        self.0.as_ref().err().map(String::as_str)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Where a channel delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// POST `{"transition", "incident"}` as JSON, optionally signed (HMAC-SHA256).
    Webhook {
        /// The receiver's URL (a secret: it often carries a token).
        url: Secret,
        /// The shared secret of the signature header, when signing.
        secret: Option<Secret>,
    },
    /// A Slack incoming webhook.
    Slack {
        /// The incoming webhook's URL.
        url: Secret,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// The service's integration (routing) key.
        routing_key: Secret,
        /// The events endpoint (default PagerDuty's).
        url: String,
    },
    /// Email over SMTP with STARTTLS.
    Email {
        /// `host:port` of the SMTP server.
        smtp: String,
        /// How the connection is secured.
        tls: EmailTls,
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// The SMTP user, when the server wants one.
        user: Option<String>,
        /// Its password.
        password: Option<Secret>,
    },
    /// An extra NATS subject.
    Nats {
        /// The subject.
        subject: String,
    },
}

/// How an email channel secures its SMTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTls {
    /// `starttls` (the default): plain connection upgraded with STARTTLS,
    /// which the server must offer (port 587).
    StartTls,
    /// `tls`: TLS from the first byte (port 465).
    Tls,
    /// `none`: no encryption, for a relay on the same host or a test sink
    /// only; the password, if any, would go in the clear.
    None,
}

impl ChannelKind {
    /// The kind's name in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::PagerDuty { .. } => "pagerduty",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Nats { .. } => "nats",
        }
    }
}

/// One channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Its name, which routes and escalation steps use.
    pub name: String,
    /// Where it delivers.
    pub kind: ChannelKind,
    /// At most this many messages a minute (the rest are summarised).
    pub per_minute: Option<u32>,
}

impl Channel {
    /// Its secrets whose environment variables are not set, as
    /// `(key, variable)`: it cannot send until they are.
    pub fn unset_secrets(&self) -> Vec<(&'static str, &str)> {
        let secrets: Vec<(&'static str, Option<&Secret>)> = match &self.kind {
            ChannelKind::Webhook { url, secret } => {
                vec![("url_env", Some(url)), ("secret_env", secret.as_ref())]
            }
            ChannelKind::Slack { url } => vec![("url_env", Some(url))],
            ChannelKind::PagerDuty { routing_key, .. } => vec![("routing_key_env", Some(routing_key))],
            ChannelKind::Email { password, .. } => vec![("password_env", password.as_ref())],
            ChannelKind::Nats { .. } => Vec::new(),
        };
        secrets.into_iter().filter_map(|(key, secret)| Some((key, secret?.unset_variable()?))).collect()
    }

    /// Whether a person reads what it sends: a page (PagerDuty) or an
    /// email. Chat channels, webhooks and NATS subjects may go unread.
    pub fn reaches_a_person(&self) -> bool {
        matches!(self.kind, ChannelKind::PagerDuty { .. } | ChannelKind::Email { .. })
    }
}

/// Which transitions of a team's incidents go to a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The channel.
    pub channel: String,
    /// Only these severities (empty: all).
    pub severities: BTreeSet<String>,
    /// Only these kinds (empty: all).
    pub kinds: BTreeSet<String>,
    /// Only these transitions (empty: all).
    pub transitions: BTreeSet<String>,
}

/// One step of an escalation chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationStep {
    /// How long after the incident opened, unacknowledged, the step fires (seconds).
    pub after_seconds: u64,
    /// Channels or teams it notifies.
    pub notify: Vec<String>,
    /// Fire again every `after` while still unacknowledged.
    pub repeat: bool,
}

/// A team's notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    /// The team, as incidents name their owner.
    pub name: String,
    /// Where its incidents go.
    pub routes: Vec<Route>,
    /// Its escalation chain, in order.
    pub escalation: Vec<EscalationStep>,
    /// While a regional outage is open, its region's stuck and
    /// provisioning-failed incidents are not sent on their own (default on).
    pub inhibit_during_outage: bool,
}

/// The notification configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// Channels by name.
    pub channels: BTreeMap<String, Channel>,
    /// Teams by name.
    pub teams: BTreeMap<String, Team>,
}

/// A configuration mistake, naming its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct NotifyConfigError {
    /// The key, such as `channels[2].url` or `teams[0].routes[1].channel`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The severities, kinds and transitions a route may name.
pub struct Names<'a> {
    /// Severity names.
    pub severities: &'a [&'a str],
    /// Incident kind names.
    pub kinds: &'a [&'a str],
    /// Transition names.
    pub transitions: &'a [&'a str],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    kind: String,
    url: Option<String>,
    url_env: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    routing_key: Option<String>,
    routing_key_env: Option<String>,
    smtp: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
    user: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    subject: Option<String>,
    tls: Option<String>,
    per_minute: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    channel: String,
    #[serde(default)]
    severities: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    transitions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    after: String,
    notify: Vec<String>,
    #[serde(default)]
    repeat: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    name: String,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    escalation: Vec<RawStep>,
    inhibit_during_outage: Option<bool>,
}

/// The default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

impl Notifications {
    /// Validates `channels` and `teams` (the arrays of tables of those
    /// names; either may be absent). `env` reads an environment variable;
    /// `seconds` parses a duration such as `10m`.
    pub fn from_toml(
        channels: Option<toml::Value>,
        teams: Option<toml::Value>,
        names: &Names<'_>,
        env: &dyn Fn(&str) -> Option<String>,
        seconds: &dyn Fn(&str) -> Result<u64, String>,
    ) -> Result<Notifications, NotifyConfigError> {
        let raw_channels: Vec<RawChannel> = match channels {
            None => Vec::new(),
            Some(value) => value.try_into().map_err(|error: toml::de::Error| NotifyConfigError {
                key: "channels".into(),
                message: error.message().to_string(),
            })?,
        };
        let raw_teams: Vec<RawTeam> = match teams {
            None => Vec::new(),
            Some(value) => value.try_into().map_err(|error: toml::de::Error| NotifyConfigError {
                key: "teams".into(),
                message: error.message().to_string(),
            })?,
        };
        let mut notifications = Notifications::default();
        for (index, raw) in raw_channels.into_iter().enumerate() {
            let channel = channel(index, raw, env)?;
            let key = format!("channels[{index}].name");
            if notifications.channels.insert(channel.name.clone(), channel).is_some() {
                return Err(NotifyConfigError { key, message: "a second channel of this name".into() });
            }
        }
        for (index, raw) in raw_teams.into_iter().enumerate() {
            let team = team(index, raw, &notifications.channels, names, seconds)?;
            let key = format!("teams[{index}].name");
            if notifications.teams.insert(team.name.clone(), team).is_some() {
                return Err(NotifyConfigError { key, message: "a second team of this name".into() });
            }
        }
        // Escalation steps may name a team defined after them: checked last.
        for (index, team) in notifications.teams.values().enumerate() {
            for (step_index, step) in team.escalation.iter().enumerate() {
                for target in &step.notify {
                    if !notifications.channels.contains_key(target)
                        && !notifications.teams.contains_key(target)
                    {
                        return Err(NotifyConfigError {
                            key: format!("teams[{index}].escalation[{step_index}].notify"),
                            message: format!("{target:?} is neither a channel nor a team"),
                        });
                    }
                }
            }
        }
        Ok(notifications)
    }

    /// The channels a transition of an incident of `team` goes to.
    pub fn route(&self, team: &str, severity: &str, kind: &str, transition: &str) -> Vec<&str> {
        let Some(team) = self.teams.get(team) else { return Vec::new() };
        let matches = |set: &BTreeSet<String>, value: &str| set.is_empty() || set.contains(value);
        team.routes
            .iter()
            .filter(|route| {
                matches(&route.severities, severity)
                    && matches(&route.kinds, kind)
                    && matches(&route.transitions, transition)
            })
            .map(|route| route.channel.as_str())
            .collect()
    }

    /// The channels step `step` (from 0; past the last, its repeats) of
    /// `team`'s escalation chain notifies, for an incident of `severity`
    /// and `kind`: its channels, and for each team it names, the channels
    /// that team gets for an `escalated` transition of such an incident
    /// (or, when it routes none, for an `opened` one). The team's own
    /// routes for `escalated` are not included: see [`Notifications::route`].
    pub fn escalation_targets(&self, team: &str, step: u32, severity: &str, kind: &str) -> Vec<&str> {
        let Some(chain) = self.teams.get(team).map(|team| &team.escalation) else { return Vec::new() };
        let Some(step) = chain.get(step as usize).or(chain.last()) else { return Vec::new() };
        let mut targets = Vec::new();
        for target in &step.notify {
            if let Some((name, _)) = self.channels.get_key_value(target) {
                targets.push(name.as_str());
            } else {
                let mut channels = self.route(target, severity, kind, "escalated");
                if channels.is_empty() {
                    channels = self.route(target, severity, kind, "opened");
                }
                targets.extend(channels);
            }
        }
        targets
    }
}

/// A secret given inline or by the name of an environment variable.
fn secret(
    key: &str,
    inline: Option<String>,
    variable: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, NotifyConfigError> {
    match (inline, variable) {
        (Some(_), Some(_)) => Err(NotifyConfigError {
            key: key.to_string(),
            message: format!("give `{key}` or `{key}_env`, not both"),
        }),
        (Some(value), None) => Ok(Some(Secret(Ok(value)))),
        (None, Some(name)) => match env(&name) {
            Some(value) if !value.is_empty() => Ok(Some(Secret(Ok(value)))),
            _ => Ok(Some(Secret(Err(name)))),
        },
        (None, None) => Ok(None),
    }
}

fn channel(
    index: usize,
    raw: RawChannel,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Channel, NotifyConfigError> {
    let key = |field: &str| format!("channels[{index}].{field}");
    let missing = |field: &str| NotifyConfigError {
        key: key(field),
        message: format!("a {} channel needs it", raw.kind),
    };
    if raw.name.trim().is_empty() {
        return Err(NotifyConfigError { key: key("name"), message: "must not be empty".into() });
    }
    if raw.tls.is_some() && raw.kind != "email" {
        return Err(NotifyConfigError { key: key("tls"), message: "only email channels have it".into() });
    }
    if raw.per_minute == Some(0) {
        return Err(NotifyConfigError { key: key("per_minute"), message: "must be at least 1".into() });
    }
    if raw.per_minute.is_some() && raw.kind == "pagerduty" {
        // A summary would swallow acknowledgements and resolutions of
        // alerts; PagerDuty groups one incident's events by its dedup key.
        return Err(NotifyConfigError {
            key: key("per_minute"),
            message: "PagerDuty channels are not summarised (each incident is one alert already)".into(),
        });
    }
    let url = secret(&key("url"), raw.url.clone(), raw.url_env.clone(), env)?;
    let kind = match raw.kind.as_str() {
        "webhook" => ChannelKind::Webhook {
            url: url.ok_or_else(|| missing("url"))?,
            secret: secret(&key("secret"), raw.secret, raw.secret_env, env)?,
        },
        "slack" => ChannelKind::Slack { url: url.ok_or_else(|| missing("url"))? },
        "pagerduty" => ChannelKind::PagerDuty {
            routing_key: secret(&key("routing_key"), raw.routing_key, raw.routing_key_env, env)?
                .ok_or_else(|| missing("routing_key"))?,
            url: match url {
                None => PAGERDUTY_EVENTS_URL.to_string(),
                Some(Secret(Ok(url))) => url,
                Some(Secret(Err(variable))) => {
                    return Err(NotifyConfigError {
                        key: key("url_env"),
                        message: format!("the environment variable {variable} is not set"),
                    });
                }
            },
        },
        "email" => ChannelKind::Email {
            smtp: raw.smtp.ok_or_else(|| missing("smtp"))?,
            tls: match raw.tls.as_deref() {
                None | Some("starttls") => EmailTls::StartTls,
                Some("tls") => EmailTls::Tls,
                Some("none") => EmailTls::None,
                Some(other) => {
                    return Err(NotifyConfigError {
                        key: key("tls"),
                        message: format!("{other:?} is not one of starttls, tls, none"),
                    });
                }
            },
            from: raw.from.ok_or_else(|| missing("from"))?,
            to: raw.to.filter(|to| !to.is_empty()).ok_or_else(|| missing("to"))?,
            user: raw.user,
            password: secret(&key("password"), raw.password, raw.password_env, env)?,
        },
        "nats" => ChannelKind::Nats { subject: raw.subject.ok_or_else(|| missing("subject"))? },
        other => {
            return Err(NotifyConfigError {
                key: key("kind"),
                message: format!("{other:?} is not one of webhook, slack, pagerduty, email, nats"),
            });
        }
    };
    Ok(Channel { name: raw.name, kind, per_minute: raw.per_minute })
}

fn team(
    index: usize,
    raw: RawTeam,
    channels: &BTreeMap<String, Channel>,
    names: &Names<'_>,
    seconds: &dyn Fn(&str) -> Result<u64, String>,
) -> Result<Team, NotifyConfigError> {
    let mut routes = Vec::new();
    for (route_index, route) in raw.routes.into_iter().enumerate() {
        let key = |field: &str| format!("teams[{index}].routes[{route_index}].{field}");
        if !channels.contains_key(&route.channel) {
            return Err(NotifyConfigError {
                key: key("channel"),
                message: format!("no channel {:?} (channels: {})", route.channel, channel_list(channels)),
            });
        }
        let known = |field: &str, values: Vec<String>, allowed: &[&str]| {
            for value in &values {
                if !allowed.contains(&value.as_str()) {
                    return Err(NotifyConfigError {
                        key: key(field),
                        message: format!("{value:?} is not one of {}", allowed.join(", ")),
                    });
                }
            }
            Ok(values.into_iter().collect::<BTreeSet<String>>())
        };
        routes.push(Route {
            severities: known("severities", route.severities, names.severities)?,
            kinds: known("kinds", route.kinds, names.kinds)?,
            transitions: known("transitions", route.transitions, names.transitions)?,
            channel: route.channel,
        });
    }
    let mut escalation: Vec<EscalationStep> = Vec::new();
    let steps = raw.escalation.len();
    for (step_index, step) in raw.escalation.into_iter().enumerate() {
        let key = |field: &str| format!("teams[{index}].escalation[{step_index}].{field}");
        let after_seconds =
            seconds(&step.after).map_err(|message| NotifyConfigError { key: key("after"), message })?;
        let previous = escalation.last().map_or(0, |step| step.after_seconds);
        if after_seconds <= previous {
            return Err(NotifyConfigError {
                key: key("after"),
                message: "each step's `after` counts from the incident's opening: it must be longer than the step before it (and above 0)".into(),
            });
        }
        if step.repeat && step_index + 1 != steps {
            return Err(NotifyConfigError {
                key: key("repeat"),
                message: "only the last step may repeat".into(),
            });
        }
        if step.notify.is_empty() {
            return Err(NotifyConfigError {
                key: key("notify"),
                message: "name at least one channel or team".into(),
            });
        }
        escalation.push(EscalationStep { after_seconds, notify: step.notify, repeat: step.repeat });
    }
    Ok(Team {
        name: raw.name,
        routes,
        escalation,
        inhibit_during_outage: raw.inhibit_during_outage.unwrap_or(true),
    })
}

fn channel_list(channels: &BTreeMap<String, Channel>) -> String {
    if channels.is_empty() {
        return "none defined".to_string();
    }
    channels.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: Names<'static> = Names {
        severities: &["critical", "error", "warning", "info"],
        kinds: &["stuck", "regional_outage"],
        transitions: &["opened", "updated", "resolved", "acknowledged", "escalated"],
    };

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Notifications, NotifyConfigError> {
        let mut table: toml::Table = toml::from_str(text).unwrap();
        let lookup =
            |name: &str| env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
        let seconds = |text: &str| match text.strip_suffix('m') {
            Some(minutes) => minutes.parse::<u64>().map(|m| m * 60).map_err(|e| e.to_string()),
            None => Err(format!("{text:?} is not a duration")),
        };
        Notifications::from_toml(table.remove("channels"), table.remove("teams"), &NAMES, &lookup, &seconds)
    }

    const CONFIG: &str = r#"
        [[channels]]
        name = "pager"
        kind = "pagerduty"
        routing_key_env = "PD_KEY"

        [[channels]]
        name = "chat"
        kind = "slack"
        url = "https://hooks.slack.example/T0/B0/xyz"

        [[teams]]
        name = "platform-oncall"
        routes = [
          { channel = "pager", severities = ["critical", "error"] },
          { channel = "chat" },
        ]
        escalation = [{ after = "10m", notify = ["pager"] }]
    "#;

    #[test]
    fn routes_follow_severity_and_secrets_come_from_the_environment() {
        let notifications = parse(CONFIG, &[("PD_KEY", "k-123")]).unwrap();
        assert_eq!(notifications.route("platform-oncall", "critical", "stuck", "opened"), ["pager", "chat"]);
        assert_eq!(notifications.route("platform-oncall", "warning", "stuck", "opened"), ["chat"]);
        assert!(notifications.route("billing-support", "critical", "stuck", "opened").is_empty());
        let team = &notifications.teams["platform-oncall"];
        assert_eq!(team.escalation[0].after_seconds, 600);
        assert!(team.inhibit_during_outage);
        let printed = format!("{notifications:?}");
        assert!(!printed.contains("k-123") && !printed.contains("xyz"), "{printed}");
        assert!(notifications.channels["pager"].unset_secrets().is_empty());
    }

    #[test]
    fn an_unset_variable_leaves_the_channel_unable_to_send_and_named() {
        let notifications = parse(CONFIG, &[]).unwrap();
        let pager = &notifications.channels["pager"];
        assert_eq!(pager.unset_secrets(), [("routing_key_env", "PD_KEY")]);
        let ChannelKind::PagerDuty { routing_key, .. } = &pager.kind else { panic!("{pager:?}") };
        assert_eq!(
            routing_key.expose().unwrap_err().to_string(),
            "the environment variable PD_KEY is not set"
        );
        assert!(pager.reaches_a_person() && !notifications.channels["chat"].reaches_a_person());
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            (
                CONFIG.replace("channel = \"chat\"", "channel = \"chaat\""),
                vec![("PD_KEY", "k")],
                "teams[0].routes[1].channel",
            ),
            (
                CONFIG.replace("\"critical\", \"error\"", "\"sev1\""),
                vec![("PD_KEY", "k")],
                "teams[0].routes[0].severities",
            ),
            (
                CONFIG.replace("kind = \"slack\"", "kind = \"pigeon\""),
                vec![("PD_KEY", "k")],
                "channels[1].kind",
            ),
            (
                CONFIG.replace("notify = [\"pager\"]", "notify = [\"nobody\"]"),
                vec![("PD_KEY", "k")],
                "teams[0].escalation[0].notify",
            ),
            (
                CONFIG.replace("after = \"10m\"", "after = \"soon\""),
                vec![("PD_KEY", "k")],
                "teams[0].escalation[0].after",
            ),
            (CONFIG.replace("url = \"https", "urll = \"https"), vec![("PD_KEY", "k")], "channels"),
        ];
        for (text, env, key) in cases {
            let error = parse(&text, &env).unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
    }
}
