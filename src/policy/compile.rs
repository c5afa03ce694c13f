//! Compiling policy files: YAML → patterns, CEL programs, checked variable
//! references. Every error names the file, the line and the rule, and all
//! errors of all files are collected before giving up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::lookup::{HookSpec, ParamRef, QueryCommand, QuerySpec, Template};
use super::pattern::Pattern;
use super::raw;
use super::readonly::prove;
use super::{Expression, Origin, Policy, PresenceSpec, Rule, UserRule};
use crate::yaml::{self, SourceError};

/// Variables every expression may use.
const GLOBALS: &[&str] = &["token", "channel", "socket_id", "request"];
/// Variables a sign-in (`user:`) expression may use.
const USER_GLOBALS: &[&str] = &["token", "socket_id", "request"];

impl Policy {
    /// Loads a policy file, or every `*.yaml`/`*.yml` file of a folder in name
    /// order (`*.test.yaml` files are policy tests and are skipped).
    pub fn load(path: &Path, max_member_bytes: usize) -> Result<Policy, Vec<SourceError>> {
        let files = policy_files(path)?;
        let mut sources = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => errors.push(SourceError::new(&file, 0, 0, format!("cannot read: {e}"))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Self::from_sources(&sources, max_member_bytes)
    }

    /// Compiles policy documents given as `(file name, text)`.
    pub fn from_sources(
        sources: &[(PathBuf, String)],
        max_member_bytes: usize,
    ) -> Result<Policy, Vec<SourceError>> {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let mut user: Option<(UserRule, Origin)> = None;
        let mut names: IndexMap<String, Origin> = IndexMap::new();
        for (file, text) in sources {
            let doc: raw::PolicyFile = match yaml::from_str(file, text) {
                Ok(doc) => doc,
                Err(mut e) => {
                    errors.append(&mut e);
                    continue;
                }
            };
            for spanned in doc.rules {
                let origin = Origin { file: file.clone(), line: spanned.referenced.line() };
                let rule = spanned.value;
                if let Some(first) = names.get(&rule.name) {
                    errors.push(SourceError::new(
                        file,
                        origin.line,
                        0,
                        format!(
                            "rule `{}` is defined twice (first at {}:{})",
                            rule.name,
                            first.file.display(),
                            first.line
                        ),
                    ));
                    continue;
                }
                names.insert(rule.name.clone(), origin.clone());
                match compile_rule(rule, origin.clone(), Src { file, text }) {
                    Ok(r) => rules.push(r),
                    Err(mut e) => errors.append(&mut e),
                }
            }
            if let Some(spanned) = doc.user {
                let origin = Origin { file: file.clone(), line: spanned.referenced.line() };
                if let Some((_, first)) = &user {
                    errors.push(SourceError::new(
                        file,
                        origin.line,
                        0,
                        format!(
                            "a second `user:` block (the first is at {}:{}); sign-in has one rule",
                            first.file.display(),
                            first.line
                        ),
                    ));
                    continue;
                }
                match compile_user(spanned.value, &origin, Src { file, text }) {
                    Ok(u) => user = Some((u, origin)),
                    Err(mut e) => errors.append(&mut e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let lookups = rules.iter().any(|r: &Rule| r.query.is_some() || r.hook.is_some());
        let token_program = match compile_on_big_stack("token") {
            Ok(p) => p,
            Err((message, _)) => return Err(vec![SourceError::new(Path::new("<builtin>"), 0, 0, message)]),
        };
        Ok(Policy {
            rules,
            lookups,
            user: user.map(|(u, _)| u),
            root: cel::Context::default(),
            max_member_bytes,
            token_program,
        })
    }
}

fn policy_files(path: &Path) -> Result<Vec<PathBuf>, Vec<SourceError>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| vec![SourceError::new(path, 0, 0, format!("cannot read policies: {e}"))])?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| vec![SourceError::new(path, 0, 0, format!("cannot list policies: {e}"))])?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_policy_file(p)).collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![
            SourceError::new(path, 0, 0, "the policy folder holds no *.yaml file")
                .with_hint("every channel would be refused; add a policy file"),
        ]);
    }
    Ok(files)
}

/// Whether a path names a policy file (not a policy test).
pub(crate) fn is_policy_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
        && p.is_file()
}

fn compile_rule(rule: raw::Rule, origin: Origin, src: Src<'_>) -> Result<Rule, Vec<SourceError>> {
    let mut errors = Vec::new();
    let context = format!("rule `{}`", rule.name);
    let at = |msg: String| SourceError::new(&origin.file, origin.line, 0, format!("{context}: {msg}"));
    if rule.name.trim().is_empty() {
        errors.push(SourceError::new(&origin.file, origin.line, 0, "a rule needs a `name`"));
    }
    let pattern = match Pattern::parse(&rule.channel) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(at(format!("channel `{}`: {e}", rule.channel)));
            None
        }
    };
    let mut known: Vec<&str> = GLOBALS.to_vec();
    if let Some(p) = &pattern {
        known.extend(p.capture_names().iter().map(String::as_str));
    }
    let captures: Vec<String> = pattern.as_ref().map(|p| p.capture_names().to_vec()).unwrap_or_default();
    let query = rule.query.as_ref().and_then(|q| {
        let line = q.referenced.line();
        compile_query(&q.value, &captures)
            .map_err(|m| {
                errors.push(SourceError::new(&origin.file, line, 0, format!("{context}: query: {m}")))
            })
            .ok()
    });
    let hook = rule.hook.as_ref().and_then(|h| {
        let line = h.referenced.line();
        compile_hook(&h.value)
            .map_err(|m| {
                errors.push(SourceError::new(&origin.file, line, 0, format!("{context}: hook: {m}")))
            })
            .ok()
    });
    if rule.query.is_some() {
        known.push("query");
    }
    if rule.hook.is_some() {
        known.push("hook");
    }
    let hook_decides = rule.allow.is_none() && rule.hook.is_some();
    let allow = match &rule.allow {
        Some(allow) => expression("allow", &allow.value.0, &known)
            .map_err(|e| errors.push(src.error(&context, allow, e)))
            .ok(),
        None if rule.hook.is_some() => {
            expression("allow", "hook.allow", &known).map_err(|e| errors.push(at(e.message))).ok()
        }
        None => {
            errors.push(at(
                "`allow` is missing: a rule decides with `allow`, or with a `hook:` whose answer decides"
                    .into(),
            ));
            None
        }
    };

    let is_presence = pattern.as_ref().map(|p| p.kind()) == Some(crate::pusher::ChannelKind::Presence);
    let presence = match (rule.presence, is_presence) {
        (Some(_), false) if pattern.is_some() => {
            errors.push(at("a `presence:` block only applies to `presence-` channels".into()));
            None
        }
        (presence, true) => {
            let presence = presence.unwrap_or(raw::Presence { user_id: None, user_info: None });
            let user_id = match &presence.user_id {
                Some(e) => expression("presence.user_id", &e.value.0, &known)
                    .map_err(|err| errors.push(src.error(&context, e, err)))
                    .ok(),
                None => expression("presence.user_id", "token.sub", &known)
                    .map_err(|err| errors.push(at(err.message)))
                    .ok(),
            };
            let user_info = presence.user_info.map(|fields| {
                fields_of("presence.user_info", fields, &known, &mut |span, err| {
                    errors.push(src.error(&context, span, err));
                })
            });
            user_id.map(|user_id| PresenceSpec { user_id, user_info })
        }
        _ => None,
    };
    match (pattern, allow) {
        (Some(pattern), Some(allow)) if errors.is_empty() => Ok(Rule {
            name: Arc::from(rule.name.as_str()),
            pattern,
            allow,
            presence,
            shadow: rule.shadow,
            origin,
            query,
            hook,
            hook_decides,
        }),
        _ => Err(errors),
    }
}

/// Longest TTL or `stale_if_error` a lookup may set.
const MAX_LOOKUP_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest hook timeout.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

fn duration(what: &str, text: Option<&str>, default: Duration, max: Duration) -> Result<Duration, String> {
    let Some(text) = text else { return Ok(default) };
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{what}: {text}` is not a duration ({e}); write e.g. 30s, 500ms, 2m"))?;
    if d > max {
        return Err(format!("`{what}: {text}` is longer than {}", humantime::format_duration(max)));
    }
    Ok(d)
}

fn compile_query(q: &raw::Query, captures: &[String]) -> Result<QuerySpec, String> {
    let ttl = duration("ttl", q.ttl.as_deref(), Duration::from_secs(30), MAX_LOOKUP_TTL)?;
    let stale_if_error =
        duration("stale_if_error", q.stale_if_error.as_deref(), Duration::ZERO, MAX_LOOKUP_TTL)?;
    if q.source.trim().is_empty() {
        return Err("`source` names a data source of the config's `sources:`".into());
    }
    let given = [q.sql.is_some(), q.sismember.is_some(), q.get.is_some(), q.hget.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err("give exactly one of `sql` (PostgreSQL), `sismember`, `get` or `hget` (Redis)".into());
    }
    let mut params: Vec<ParamRef> = Vec::new();
    let command = if let Some(sql) = &q.sql {
        for text in q.params.iter().flatten() {
            params.push(ParamRef::parse(text, captures)?);
        }
        let proven = prove(sql).map_err(|e| format!("sql: {e}"))?;
        if proven.params() != params.len() {
            return Err(format!(
                "the SQL uses {} parameter(s) ($1…), `params` lists {}: one value per parameter, in order",
                proven.params(),
                params.len()
            ));
        }
        QueryCommand::Sql(proven)
    } else {
        if q.params.is_some() {
            return Err(
                "`params` is for `sql`; a Redis command names its values in braces: `key: \"room:{room}:members\"`"
                    .into(),
            );
        }
        let mut template = |text: &str| {
            Template::parse(text, |name| {
                let r = ParamRef::parse(name, captures)?;
                Ok(match params.iter().position(|p| *p == r) {
                    Some(i) => i,
                    None => {
                        params.push(r);
                        params.len() - 1
                    }
                })
            })
        };
        match (&q.sismember, &q.get, &q.hget) {
            (Some(s), _, _) => {
                QueryCommand::SisMember { key: template(&s.key)?, member: template(&s.member)? }
            }
            (_, Some(key), _) => QueryCommand::Get { key: template(key)? },
            (_, _, Some(h)) => QueryCommand::HGet { key: template(&h.key)?, field: template(&h.field)? },
            _ => return Err("give exactly one of `sql`, `sismember`, `get` or `hget`".into()),
        }
    };
    Ok(QuerySpec { source: q.source.trim().to_owned(), command, params, ttl, stale_if_error })
}

fn compile_hook(h: &raw::Hook) -> Result<HookSpec, String> {
    let url = url::Url::parse(h.url.trim()).map_err(|e| format!("`url: {}` is not a URL ({e})", h.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`url: {}` must be an http:// or https:// URL with a host", h.url));
    }
    let ttl = duration("ttl", h.ttl.as_deref(), Duration::from_secs(30), MAX_LOOKUP_TTL)?;
    let timeout = duration("timeout", h.timeout.as_deref(), Duration::from_secs(1), MAX_HOOK_TIMEOUT)?;
    if timeout.is_zero() {
        return Err("`timeout` must be longer than zero".into());
    }
    let stale_if_error =
        duration("stale_if_error", h.stale_if_error.as_deref(), Duration::ZERO, MAX_LOOKUP_TTL)?;
    let mut headers = Vec::with_capacity(h.headers.len());
    for (name, value) in &h.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("headers: `{name}` is not a header name"));
        }
        if value.env.trim().is_empty() {
            return Err(format!("headers.{name}: `env` names the environment variable that holds the value"));
        }
        headers.push((name.clone(), value.env.trim().to_owned()));
    }
    Ok(HookSpec { url: url.to_string(), ttl, timeout, stale_if_error, headers })
}

fn compile_user(user: raw::User, origin: &Origin, src: Src<'_>) -> Result<UserRule, Vec<SourceError>> {
    let mut errors = Vec::new();
    let one = |what: &str, e: Option<&Spanned<raw::Expr>>, errors: &mut Vec<SourceError>| match e {
        Some(e) => expression(what, &e.value.0, USER_GLOBALS)
            .map_err(|err| errors.push(src.error("user", e, err)))
            .ok(),
        None => None,
    };
    let id = match &user.id {
        Some(_) => one("id", user.id.as_ref(), &mut errors),
        None => expression("id", "token.sub", USER_GLOBALS)
            .map_err(|err| {
                errors.push(SourceError::new(&origin.file, origin.line, 0, format!("user: {}", err.message)));
            })
            .ok(),
    };
    let allow = one("allow", user.allow.as_ref(), &mut errors);
    let watchlist = one("watchlist", user.watchlist.as_ref(), &mut errors);
    let user_info = user.user_info.map(|f| {
        fields_of("user_info", f, USER_GLOBALS, &mut |span, err| errors.push(src.error("user", span, err)))
    });
    match id {
        Some(id) if errors.is_empty() => Ok(UserRule { id, allow, user_info, watchlist }),
        _ => Err(errors),
    }
}

fn fields_of(
    what: &str,
    fields: IndexMap<String, Spanned<raw::Expr>>,
    known: &[&str],
    report: &mut dyn FnMut(&Spanned<raw::Expr>, ExprError),
) -> Vec<(String, Expression)> {
    let mut out = Vec::with_capacity(fields.len());
    for (name, expr) in fields {
        match expression(&format!("{what}.{name}"), &expr.value.0, known) {
            Ok(e) => out.push((name, e)),
            Err(err) => report(&expr, err),
        }
    }
    out
}

/// A policy file being compiled, for the position of an expression's error.
#[derive(Clone, Copy)]
struct Src<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    /// The error for the expression written at `span`, located at the
    /// expression's own line (and, for a one-line expression, the column of
    /// the mistake), with the expression and a caret under the mistake.
    fn error(&self, context: &str, span: &Spanned<raw::Expr>, e: ExprError) -> SourceError {
        let (line, column) = (span.referenced.line(), span.referenced.column());
        let source = &span.value.0;
        // The mistake's own line and column, when the expression's text
        // stands there as written: a plain or quoted one-line scalar, or a
        // literal block (`|`). A folded or escaped scalar keeps the position
        // of the value.
        let file_line =
            |n: u64| usize::try_from(n).ok().and_then(|n| self.text.lines().nth(n.checked_sub(1)?));
        let (mut at_line, mut at_column) = (line, column);
        if let Some((l, c)) = e.at
            && let Some(expr_line) = source.lines().nth(l.saturating_sub(1))
        {
            let quote = file_line(line)
                .and_then(|t| t.chars().nth(usize::try_from(column).ok()?.checked_sub(1)?))
                .is_some_and(|ch| ch == '"' || ch == '\'');
            let (cand_line, start) = (line + l as u64 - 1, column + u64::from(quote && l == 1));
            let stands_there = file_line(cand_line).is_some_and(|t| {
                let skip = usize::try_from(start).unwrap_or(usize::MAX).saturating_sub(1);
                t.chars().skip(skip).collect::<String>().starts_with(expr_line)
            });
            if stands_there {
                (at_line, at_column) = (cand_line, start + c as u64 - 1);
            }
        }
        let mut err = SourceError::new(self.file, at_line, at_column, format!("{context}: {}", e.message));
        if e.hint.is_some() {
            err.hint = e.hint;
        }
        match e.at.and_then(|(l, c)| Some((source.lines().nth(l.checked_sub(1)?)?, c))) {
            Some((text, c)) => err.with_caret(text, c),
            None => err,
        }
    }
}

/// Why an expression was refused.
#[derive(Debug)]
struct ExprError {
    message: String,
    /// 1-based line and column in the expression.
    at: Option<(usize, usize)>,
    hint: Option<String>,
}

impl ExprError {
    fn plain(message: String) -> Self {
        Self { message, at: None, hint: None }
    }
}

/// Compiles one CEL expression and checks that it only names known
/// variables and functions, so that a typo fails `check`, not a request.
fn expression(what: &str, source: &str, known: &[&str]) -> Result<Expression, ExprError> {
    if source.trim().is_empty() {
        return Err(ExprError::plain(format!("`{what}` is empty")));
    }
    check_size(what, source).map_err(ExprError::plain)?;
    let program = compile_on_big_stack(source).map_err(|(message, at)| ExprError {
        message: format!("`{what}` does not parse as CEL: {message}"),
        at,
        hint: syntax_hint(source),
    })?;
    let bound = macro_variables(source);
    let referenced: HashSet<String> = program
        .references()
        .variables()
        .into_iter()
        .filter(|v| !v.starts_with('@') && !v.starts_with("__") && !bound.iter().any(|b| b == v))
        .map(str::to_owned)
        .collect();
    let mut unknown: Vec<&String> = referenced.iter().filter(|v| !known.contains(&v.as_str())).collect();
    unknown.sort();
    if let Some(v) = unknown.first() {
        return Err(ExprError {
            message: format!("`{what}` uses `{v}`, which is not defined here (known: {})", known.join(", ")),
            at: find_name(source, v, false),
            hint: None,
        });
    }
    let references = program.references();
    let mut functions: Vec<&str> =
        references.functions().into_iter().filter(|f| !is_operator(f) && !is_function(f)).collect();
    functions.sort_unstable();
    if let Some(f) = functions.first() {
        return Err(ExprError {
            message: format!("`{what}` calls `{f}`, which is not a CEL function"),
            at: find_name(source, f, true),
            hint: Some(function_hint(f)),
        });
    }
    let token_by_member = token_read_by_member(program.expression());
    let native = super::native::compile(program.expression());
    Ok(Expression { source: source.to_owned(), program, token_by_member, native })
}

/// Whether `token` appears in `expr` only as the operand of a field
/// selection or an index (`token.x`, `has(token.x)`, `token["x"]`), never as
/// a value of its own
/// (`size(token)`, `token == {...}`, `[token]`, a comprehension over it or a
/// variable of that name). Those expressions can be answered member by
/// member; any other use of the name gets the whole map.
pub(super) fn token_read_by_member(expr: &cel::IdedExpr) -> bool {
    use cel::IdedExpr;
    use cel::common::ast::{EntryExpr, Expr};
    let entries_ok = |entries: &[cel::common::ast::IdedEntryExpr]| {
        entries.iter().all(|entry| match &entry.expr {
            EntryExpr::StructField(field) => token_read_by_member(&field.value),
            EntryExpr::MapEntry(entry) => {
                token_read_by_member(&entry.key) && token_read_by_member(&entry.value)
            }
        })
    };
    match &expr.expr {
        Expr::Ident(name) => name != "token",
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(name) if name == "token" => true,
            _ => token_read_by_member(&select.operand),
        },
        // `token["x"]` is a lookup too.
        Expr::Call(call)
            if call.func_name == "_[_]"
                && call.target.is_none()
                && matches!(call.args.as_slice(), [IdedExpr { expr: Expr::Ident(name), .. }, _] if name == "token") =>
        {
            call.args[1..].iter().all(token_read_by_member)
        }
        Expr::Call(call) => {
            call.target.as_deref().is_none_or(token_read_by_member)
                && call.args.iter().all(token_read_by_member)
        }
        Expr::Comprehension(c) => {
            // A comprehension variable called `token` shadows the claims.
            c.iter_var != "token"
                && c.iter_var2.as_deref() != Some("token")
                && c.accu_var != "token"
                && [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .all(token_read_by_member)
        }
        Expr::List(list) => list.elements.iter().all(token_read_by_member),
        Expr::Map(map) => entries_ok(&map.entries),
        Expr::Struct(s) => entries_ok(&s.entries),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

/// Operators appear among a program's functions under internal names
/// (`_==_`, `!_`, `@in`, …); the interpreter implements them itself.
fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name.ends_with('_')
}

/// Whether `name` is a function the policy's evaluation context has: the
/// CEL standard library, as in `Policy::root` (`cel::Context::default()`).
/// The crate answers only through `add_function`, which refuses a name the
/// standard library declares; the probe context is never evaluated.
pub(crate) fn is_function(name: &str) -> bool {
    /// A probe that accepted this many unknown names (each one added to it)
    /// is replaced, so probing never grows memory without bound.
    const MAX_ADDED: usize = 1024;
    thread_local! {
        static PROBE: std::cell::RefCell<(cel::Context<'static, 'static>, usize)> =
            std::cell::RefCell::new((cel::Context::default(), 0));
    }
    PROBE.with(|probe| {
        let mut probe = probe.borrow_mut();
        if probe.1 >= MAX_ADDED {
            *probe = (cel::Context::default(), 0);
        }
        let known = probe.0.add_function(name, || false).is_err();
        if !known {
            probe.1 += 1;
        }
        known
    })
}

/// The standard functions, for suggestions (a test checks each is real).
pub(crate) const STANDARD_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
];

fn function_hint(name: &str) -> String {
    match name {
        "includes" | "indexOf" | "has_element" => {
            "test membership with `x in list` (or `text.contains(part)` for a string)".into()
        }
        "length" | "len" | "count" => "use `size(x)` for the length of a string, list or map".into(),
        _ => {
            let best = STANDARD_FUNCTIONS
                .iter()
                .map(|f| (levenshtein(&name.to_ascii_lowercase(), &f.to_ascii_lowercase()), f))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d);
            match best {
                Some((_, f)) => format!("did you mean `{f}`?"),
                None => format!(
                    "the functions are CEL's standard ones ({}) and the macros has(), all(), exists(), \
                     exists_one(), map(), filter()",
                    STANDARD_FUNCTIONS.join(", ")
                ),
            }
        }
    }
}

/// Hints for what other languages write differently: `=` and `and`.
fn syntax_hint(source: &str) -> Option<String> {
    let code = without_strings(source);
    let chars: Vec<char> = code.chars().collect();
    let lone_equals = chars.iter().enumerate().any(|(i, c)| {
        *c == '='
            && !matches!(i.checked_sub(1).map(|j| chars[j]), Some('=' | '!' | '<' | '>'))
            && chars.get(i + 1) != Some(&'=')
    });
    if lone_equals {
        return Some("compare with `==`; a single `=` is not a CEL operator".into());
    }
    let words: Vec<&str> = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    let spelled: Vec<String> = [("and", "&&"), ("or", "||"), ("not", "!")]
        .iter()
        .filter(|(w, _)| words.contains(w))
        .map(|(w, op)| format!("`{op}` for `{w}`"))
        .collect();
    if !spelled.is_empty() {
        return Some(format!("CEL spells logic with symbols: write {}", spelled.join(", ")));
    }
    None
}

/// `source` with the contents of string literals blanked out.
fn without_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                out.push(' ');
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// Where `name` is used as a variable (not after a `.`) or called as a
/// function: 1-based line and column, outside string literals.
fn find_name(source: &str, name: &str, call: bool) -> Option<(usize, usize)> {
    if name.is_empty() {
        return None;
    }
    let code = without_strings(source);
    for (l, line) in code.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut from = 0;
        while let Some(i) = line[from..].find(name).map(|i| i + from) {
            let before = line[..i].chars().next_back();
            let after_index = i + name.len();
            let after = line[after_index..].chars().next();
            let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
            let starts = !before.is_some_and(|c| ident(c) || (!call && c == '.'));
            let ends = !after.is_some_and(ident);
            let called = line[after_index..].trim_start().starts_with('(');
            if starts && ends && (called == call) {
                return Some((l + 1, line[..i].chars().count() + 1));
            }
            from = after_index.min(bytes.len());
        }
    }
    None
}

/// Levenshtein distance (short names only).
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Longest expression accepted, in bytes.
const MAX_EXPRESSION_BYTES: usize = 4096;
/// Deepest bracket nesting accepted.
const MAX_NESTING: usize = 32;
/// Most operators in one expression.
const MAX_OPERATORS: usize = 64;
/// Stack for the CEL parser, whose recursion is deep (a fuzzer found stack
/// overflows on long operator chains and deep parentheses).
const COMPILE_STACK: usize = 64 << 20;

/// Bounds what the CEL parser and evaluator recurse on, so a policy can
/// never overflow a stack: at load, or later on a request thread.
fn check_size(what: &str, source: &str) -> Result<(), String> {
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(format!("`{what}` is longer than {MAX_EXPRESSION_BYTES} bytes; split the rule"));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(format!("`{what}` nests brackets {deepest} deep (limit {MAX_NESTING})"));
    }
    // Member access and indexing nest too (`a.b.c`, `a[0][0]`): they count.
    let operators =
        ["&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "?", " in ", ".", "["]
            .iter()
            .map(|op| source.matches(op).count())
            .sum::<usize>();
    if operators > MAX_OPERATORS {
        return Err(format!("`{what}` has {operators} operators (limit {MAX_OPERATORS}); split the rule"));
    }
    Ok(())
}

/// Compiles on a thread with a large stack; a parser failure of any kind
/// (even a panic inside the CEL crate) is an error, not a crash.
/// Errors keep the first parser message and its 1-based line and column.
fn compile_on_big_stack(source: &str) -> Result<cel::Program, (String, Option<(usize, usize)>)> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || cel::Program::compile(source).map_err(|e| first_parse_error(&e)))
            .map_err(|e| (format!("cannot start the compiler thread: {e}"), None))?;
        handle.join().unwrap_or_else(|_| Err(("the CEL parser failed on this expression".into(), None)))
    })
}

fn first_parse_error(e: &cel::ParseErrors) -> (String, Option<(usize, usize)>) {
    match e.errors.first() {
        Some(first) => {
            let message = first.msg.strip_prefix("Syntax error: ").unwrap_or(&first.msg);
            let at = match (usize::try_from(first.pos.0), usize::try_from(first.pos.1)) {
                (Ok(l), Ok(c)) if l > 0 && c > 0 => Some((l, c)),
                _ => None,
            };
            (one_line(message), at)
        }
        None => (one_line(&e.to_string()), None),
    }
}

/// Variables bound by CEL's comprehension macros (`list.exists(x, …)`,
/// `all`, `exists_one`, `map`, `filter`): they are local to the macro, not
/// references to policy variables.
fn macro_variables(source: &str) -> Vec<String> {
    // CEL's whitespace (its grammar's WHITESPACE), not Unicode's `\s`: an
    // ASCII class compiles without the UTF-8 automaton builder and its
    // 300 KiB table.
    static MACRO: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"\.[ \t\n\r\x0C]*(?:all|exists|exists_one|map|filter)[ \t\n\r\x0C]*\([ \t\n\r\x0C]*([A-Za-z_][A-Za-z0-9_]*)[ \t\n\r\x0C]*,",
        )
        .ok()
    });
    MACRO
        .as_ref()
        .map(|re| re.captures_iter(source).filter_map(|c| c.get(1)).map(|m| m.as_str().to_owned()).collect())
        .unwrap_or_default()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
