//! Policies: ordered channel rules and the sign-in rule, decided with CEL.
//!
//! A [`Policy`] is compiled once from YAML (see `compile`) and then only
//! evaluated. Invariants:
//! - evaluation is pure: no I/O, no clock, no panics; the same request gives
//!   the same [`Decision`];
//! - default deny: a channel no rule matches is refused (`no_rule_matched`),
//!   an `allow` that errors or is not a bool refuses (`rule_error`), and
//!   sign-in without a `user:` block is refused (`signin_disabled`);
//! - the first rule whose pattern matches the channel decides; later rules
//!   are not consulted, whatever the first one says; `shadow: true` rules
//!   are evaluated and reported but never decide;
//! - `user_info` holds only the fields the policy names; a presence
//!   `channel_data` larger than the configured limit is refused, never
//!   signed.

pub mod pattern;
pub mod testing;
pub mod value;

pub mod lint;

mod compile;
mod eval;
pub mod lookup;
mod native;
mod raw;
pub mod readonly;

use std::path::PathBuf;
use std::sync::Arc;

pub use eval::{Decision, DenyReason, Request, ShadowResult, Trace, TraceStep};
pub use value::TokenValue;

pub(crate) use compile::is_policy_file;

use self::pattern::Pattern;

/// Default cap on a presence `channel_data` string, in bytes (Pusher's own
/// member limit is 1 KB).
pub const DEFAULT_MAX_MEMBER_BYTES: usize = 1024;

/// A compiled policy set.
pub struct Policy {
    rules: Vec<Rule>,
    /// Whether some rule has a `query:` or a `hook:`.
    lookups: bool,
    user: Option<UserRule>,
    root: cel::Context<'static, 'static>,
    max_member_bytes: usize,
    /// `token`, compiled once: the claims as JSON for a hook's question.
    token_program: cel::Program,
}

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Policy file.
    pub file: PathBuf,
    /// 1-based line of the rule.
    pub line: u64,
}

/// A compiled channel rule.
pub struct Rule {
    name: Arc<str>,
    pattern: Pattern,
    allow: Expression,
    presence: Option<PresenceSpec>,
    shadow: bool,
    origin: Origin,
    query: Option<lookup::QuerySpec>,
    hook: Option<lookup::HookSpec>,
    /// `allow` is the default `hook.allow`: a false answer is the app's
    /// denial (`hook_denied`).
    hook_decides: bool,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's channel pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The rule's `query:`, if any.
    pub fn query(&self) -> Option<&lookup::QuerySpec> {
        self.query.as_ref()
    }

    /// The rule's `hook:`, if any.
    pub fn hook(&self) -> Option<&lookup::HookSpec> {
        self.hook.as_ref()
    }
}

/// A compiled CEL expression and its source text.
struct Expression {
    source: String,
    program: cel::Program,
    /// `token` is only read through its members (`token.x`,
    /// `has(token.x)`): a session's lazy claims answer it without building
    /// the whole claims map.
    token_by_member: bool,
    /// The same expression without the interpreter, when it has one of
    /// the common shapes ([`native`]); CEL decides whenever it cannot.
    native: Option<native::Native>,
}

struct PresenceSpec {
    user_id: Expression,
    user_info: Option<Vec<(String, Expression)>>,
}

struct UserRule {
    id: Expression,
    allow: Option<Expression>,
    user_info: Option<Vec<(String, Expression)>>,
    watchlist: Option<Expression>,
}

impl Policy {
    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether a `user:` block allows sign-in at all.
    pub fn signin_enabled(&self) -> bool {
        self.user.is_some()
    }

    /// The presence member-size cap in force.
    pub fn max_member_bytes(&self) -> usize {
        self.max_member_bytes
    }

    /// Whether some rule asks a data source or a hook.
    pub fn has_lookups(&self) -> bool {
        self.lookups
    }
}

/// The keys a policy file accepts (for the configuration reference test).
#[cfg(test)]
pub(crate) fn file_schema() -> Vec<crate::yaml::schema::Entry> {
    crate::yaml::schema::entries::<raw::PolicyFile>()
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>())
            .field("signin", &self.user.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests;
