//! `channelgate check` lints: mistakes that compile but do not do what the
//! author meant.
//!
//! - **shadowed**: a rule no channel can reach, because an earlier rule's
//!   pattern matches every channel it matches (the class of bug behind
//!   Laravel's greedy channel patterns, laravel/framework#25065);
//! - **overlap**: two rules that both match some channels; the earlier one
//!   decides those, which may not be what the later one's author expects;
//! - **presence-size**: a presence rule whose `channel_data` can outgrow
//!   the member-size limit (an estimate: user ids up to 64 bytes, each
//!   `user_info` field up to 128 bytes);
//! - **target**: the configured server lacks a feature the policy uses.
//!
//! Pattern comparison is by sampling: channel names drawn from the later
//! pattern (deterministic seed) are matched against the earlier one.
//! Literal-only patterns are checked exactly.

use std::fmt;

use rand::SeedableRng;

use super::{Origin, Policy};
use crate::pusher::ChannelKind;

/// How many sample channels are drawn per pattern.
const SAMPLES: usize = 64;
/// Assumed longest presence user id, for the size estimate.
const EST_USER_ID: usize = 64;
/// Assumed longest `user_info` field value, for the size estimate.
const EST_FIELD: usize = 128;

/// The server the gateway signs for (`target:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Pusher Channels.
    Pusher,
    /// Sockudo.
    Sockudo,
    /// Soketi.
    Soketi,
    /// Laravel Reverb.
    Reverb,
}

impl Target {
    /// Parses a target name.
    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "pusher" => Some(Target::Pusher),
            "sockudo" => Some(Target::Sockudo),
            "soketi" => Some(Target::Soketi),
            "reverb" => Some(Target::Reverb),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Pusher => "Pusher",
            Target::Sockudo => "Sockudo",
            Target::Soketi => "Soketi",
            Target::Reverb => "Laravel Reverb",
        }
    }
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable code: `shadowed`, `overlap`, `presence-size`, `target`.
    pub code: &'static str,
    /// Where.
    pub origin: Option<Origin>,
    /// What, for a person.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{}:{}: ", o.file.display(), o.line)?;
        }
        write!(f, "warning[{}]: {}", self.code, self.message)
    }
}

/// Runs every lint.
pub fn lint(policy: &Policy, target: Option<Target>) -> Vec<Finding> {
    let mut out = Vec::new();
    overlaps(policy, &mut out);
    presence_size(policy, &mut out);
    if let Some(t) = target {
        target_features(policy, t, &mut out);
    }
    out
}

fn overlaps(policy: &Policy, out: &mut Vec<Finding>) {
    let rules: Vec<_> = policy.rules.iter().filter(|r| !r.shadow).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6368_616e);
    let samples: Vec<_> = rules.iter().map(|r| r.pattern.samples(&mut rng, SAMPLES)).collect();
    for (j, later) in rules.iter().enumerate() {
        if samples[j].is_empty() {
            continue;
        }
        for earlier in &rules[..j] {
            if earlier.pattern.kind() != later.pattern.kind() {
                continue;
            }
            let hits: Vec<_> = samples[j].iter().filter(|c| earlier.pattern.matches(c).is_some()).collect();
            if hits.len() == samples[j].len() {
                out.push(Finding {
                    code: "shadowed",
                    origin: Some(later.origin.clone()),
                    message: format!(
                        "rule `{}` (`{}`) is never reached: the earlier rule `{}` (`{}`) matches its channels first, \
                         e.g. `{}`; move it up or narrow the earlier pattern with a regex capture",
                        later.name,
                        later.pattern.as_str(),
                        earlier.name,
                        earlier.pattern.as_str(),
                        hits[0]
                    ),
                });
                break;
            }
            if let Some(example) = hits.first() {
                out.push(Finding {
                    code: "overlap",
                    origin: Some(later.origin.clone()),
                    message: format!(
                        "rules `{}` and `{}` both match some channels (e.g. `{example}`); the earlier `{}` decides them",
                        earlier.name, later.name, earlier.name
                    ),
                });
            }
        }
    }
}

fn presence_size(policy: &Policy, out: &mut Vec<Finding>) {
    for rule in &policy.rules {
        let Some(p) = &rule.presence else { continue };
        debug_assert_eq!(rule.pattern.kind(), ChannelKind::Presence);
        let mut estimate = r#"{"user_id":""}"#.len() + EST_USER_ID;
        if let Some(fields) = &p.user_info {
            estimate += r#","user_info":{}"#.len();
            for (name, _) in fields {
                estimate += name.len() + r#""":"","#.len() + EST_FIELD;
            }
        }
        if estimate > policy.max_member_bytes {
            out.push(Finding {
                code: "presence-size",
                origin: Some(rule.origin.clone()),
                message: format!(
                    "rule `{}`: presence data may reach ~{estimate} bytes (user id ≤ {EST_USER_ID}, {} user_info field(s) \
                     ≤ {EST_FIELD} bytes each), over presence.max_member_bytes = {}; such members are refused \
                     with presence_data_too_large — drop fields or raise the limit if the server allows it",
                    rule.name,
                    p.user_info.as_ref().map_or(0, Vec::len),
                    policy.max_member_bytes
                ),
            });
        }
    }
}

fn target_features(policy: &Policy, target: Target, out: &mut Vec<Finding>) {
    if target == Target::Reverb && policy.user.is_some() {
        out.push(Finding {
            code: "target",
            origin: None,
            message: format!(
                "{} has no `pusher:signin`: the `user:` block (user authentication) will never be used",
                target.name()
            ),
        });
    }
    if target == Target::Pusher && policy.max_member_bytes > 1024 {
        out.push(Finding {
            code: "target",
            origin: None,
            message: format!(
                "Pusher refuses presence members over 1 KB, but presence.max_member_bytes is {}",
                policy.max_member_bytes
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn findings(yaml: &str, max: usize, target: Option<Target>) -> Vec<Finding> {
        let p = Policy::from_sources(&[(PathBuf::from("p.yaml"), yaml.to_owned())], max).unwrap();
        lint(&p, target)
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_clean_policy_has_no_findings() {
        let f = findings(
            "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: true\n  - name: org\n    channel: private-org-{org:[a-z]+}-news\n    allow: true\n  - name: room\n    channel: presence-room-{r:[0-9]+}\n    allow: true\n    presence: { user_info: { name: token.name } }\n",
            1024,
            Some(Target::Sockudo),
        );
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn greedy_capture_shadows_a_later_rule() {
        let f = findings(
            "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user == token.sub\n  - name: settings\n    channel: private-user-{id:[a-z0-9]+}-settings\n    allow: true\n",
            1024,
            None,
        );
        assert_eq!(codes(&f), ["shadowed"], "{f:#?}");
        assert!(f[0].message.contains("`settings`") && f[0].message.contains("`own`"), "{}", f[0]);
        assert_eq!(f[0].origin.as_ref().unwrap().line, 5);
    }

    #[test]
    fn literal_rule_after_a_catch_all_is_shadowed() {
        let f = findings(
            "rules:\n  - name: all\n    channel: private-{x}\n    allow: false\n  - name: lobby\n    channel: private-lobby\n    allow: true\n",
            1024,
            None,
        );
        assert_eq!(codes(&f), ["shadowed"]);
    }

    #[test]
    fn partial_overlap_is_reported() {
        let f = findings(
            "rules:\n  - name: digits\n    channel: private-room-{r:[0-9]+}\n    allow: true\n  - name: any\n    channel: private-room-{r:[a-z0-9]+}\n    allow: true\n",
            1024,
            None,
        );
        assert_eq!(codes(&f), ["overlap"], "{f:#?}");
    }

    #[test]
    fn different_kinds_never_overlap_and_shadow_rules_are_ignored() {
        let f = findings(
            "rules:\n  - name: p\n    channel: private-{x}\n    allow: true\n  - name: e\n    channel: private-encrypted-{x}\n    allow: true\n  - name: s\n    channel: private-{y}\n    allow: true\n    shadow: true\n",
            1024,
            None,
        );
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn presence_data_that_can_outgrow_the_limit() {
        let yaml = "rules:\n  - name: room\n    channel: presence-room-{r}\n    allow: true\n    presence:\n      user_info: { a: token.a, b: token.b, c: token.c, d: token.d, e: token.e, f: token.f, g: token.g }\n";
        assert_eq!(codes(&findings(yaml, 1024, None)), ["presence-size"]);
        assert!(findings(yaml, 2048, None).is_empty());
    }

    #[test]
    fn target_profiles() {
        let yaml = "rules: []\nuser:\n  id: token.sub\n";
        assert_eq!(codes(&findings(yaml, 1024, Some(Target::Reverb))), ["target"]);
        assert!(findings(yaml, 1024, Some(Target::Sockudo)).is_empty());
        assert_eq!(codes(&findings("rules: []\n", 2048, Some(Target::Pusher))), ["target"]);
    }
}
