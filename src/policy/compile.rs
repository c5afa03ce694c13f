//! Compiling policy files: YAML → patterns, CEL programs, checked variable
//! references. Every error names the file, the line and the rule, and all
//! errors of all files are collected before giving up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::pattern::Pattern;
use super::raw;
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
                match compile_rule(rule, origin.clone()) {
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
                match compile_user(spanned.value, &origin) {
                    Ok(u) => user = Some((u, origin)),
                    Err(mut e) => errors.append(&mut e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy { rules, user: user.map(|(u, _)| u), root: cel::Context::default(), max_member_bytes })
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

fn compile_rule(rule: raw::Rule, origin: Origin) -> Result<Rule, Vec<SourceError>> {
    let mut errors = Vec::new();
    let at =
        |msg: String| SourceError::new(&origin.file, origin.line, 0, format!("rule `{}`: {msg}", rule.name));
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
    let allow = expression("allow", &rule.allow.0, &known).map_err(|m| errors.push(at(m))).ok();

    let is_presence = pattern.as_ref().map(|p| p.kind()) == Some(crate::pusher::ChannelKind::Presence);
    let presence = match (rule.presence, is_presence) {
        (Some(_), false) if pattern.is_some() => {
            errors.push(at("a `presence:` block only applies to `presence-` channels".into()));
            None
        }
        (presence, true) => {
            let presence = presence.unwrap_or(raw::Presence { user_id: None, user_info: None });
            let user_id_src = presence.user_id.map_or_else(|| "token.sub".to_owned(), |e| e.0);
            let user_id =
                expression("presence.user_id", &user_id_src, &known).map_err(|m| errors.push(at(m))).ok();
            let user_info = presence
                .user_info
                .map(|fields| fields_of("presence.user_info", fields, &known, &mut |m| errors.push(at(m))));
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
        }),
        _ => Err(errors),
    }
}

fn compile_user(user: raw::User, origin: &Origin) -> Result<UserRule, Vec<SourceError>> {
    let mut errors = Vec::new();
    let mut at =
        |msg: String| errors.push(SourceError::new(&origin.file, origin.line, 0, format!("user: {msg}")));
    let id_src = user.id.map_or_else(|| "token.sub".to_owned(), |e| e.0);
    let id = expression("id", &id_src, USER_GLOBALS).map_err(&mut at).ok();
    let allow = user.allow.and_then(|e| expression("allow", &e.0, USER_GLOBALS).map_err(&mut at).ok());
    let watchlist =
        user.watchlist.and_then(|e| expression("watchlist", &e.0, USER_GLOBALS).map_err(&mut at).ok());
    let user_info = user.user_info.map(|f| fields_of("user_info", f, USER_GLOBALS, &mut at));
    match id {
        Some(id) if errors.is_empty() => Ok(UserRule { id, allow, user_info, watchlist }),
        _ => Err(errors),
    }
}

fn fields_of(
    what: &str,
    fields: IndexMap<String, raw::Expr>,
    known: &[&str],
    report: &mut dyn FnMut(String),
) -> Vec<(String, Expression)> {
    let mut out = Vec::with_capacity(fields.len());
    for (name, expr) in fields {
        match expression(&format!("{what}.{name}"), &expr.0, known) {
            Ok(e) => out.push((name, e)),
            Err(m) => report(m),
        }
    }
    out
}

/// Compiles one CEL expression and checks that it only names known variables.
fn expression(what: &str, source: &str, known: &[&str]) -> Result<Expression, String> {
    if source.trim().is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    check_size(what, source)?;
    let program = compile_on_big_stack(source)
        .map_err(|e| format!("`{what}` does not parse as CEL: {}", one_line(&e)))?;
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
        return Err(format!("`{what}` uses `{v}`, which is not defined here (known: {})", known.join(", ")));
    }
    Ok(Expression { source: source.to_owned(), program })
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
fn compile_on_big_stack(source: &str) -> Result<cel::Program, String> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || cel::Program::compile(source).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot start the compiler thread: {e}"))?;
        handle.join().unwrap_or_else(|_| Err("the CEL parser failed on this expression".into()))
    })
}

/// Variables bound by CEL's comprehension macros (`list.exists(x, …)`,
/// `all`, `exists_one`, `map`, `filter`): they are local to the macro, not
/// references to policy variables.
fn macro_variables(source: &str) -> Vec<String> {
    static MACRO: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
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
