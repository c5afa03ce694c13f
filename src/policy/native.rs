//! The common rule shapes, answered without the CEL interpreter.
//!
//! Most rules compare a channel capture with a claim or look it up in a
//! claim's list (`user == token.sub`, `has(token.docs) && doc in
//! token.docs`), and most presence fields name a claim (`token.sub`). The
//! interpreter spends most of a decision resolving names and boxing values;
//! these shapes need neither. An expression made only of the pieces below
//! is compiled a second time into a [`Native`] form beside its CEL program:
//!
//! - `&&`, `||`, `!`, `true`, `false`;
//! - `has(token.NAME)`;
//! - `A == B`, `A != B` where A and B are string terms: a capture, `channel`,
//!   `socket_id`, a string literal or `token.NAME`;
//! - `A in token.NAME`, A a string term.
//!
//! The native answer is only ever *definite*: whenever a term is not what
//! the shape assumes (an absent claim, a claim that is not a string, a list
//! holding anything but strings, a token that is not an object, an unknown
//! name), it answers `None` and the caller evaluates the CEL program, so
//! errors, their messages and every other corner keep the interpreter's
//! semantics. Where it answers, it answers what CEL answers (the
//! differential tests below hold that): `false && x` and `true || x` do
//! not look at `x`, as cel's interpreter does not.

use cel::common::ast::operators;
use cel::common::ast::{Expr, LiteralValue};
use cel::common::types::{CelList, CelString};

use super::value::TokenValue;

/// A boolean shape (an `allow`), or a string term (a presence `user_id` or
/// `user_info` field).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Native {
    Cond(Cond),
    Term(Term),
}

/// A boolean expression of the supported shapes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cond {
    Const(bool),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    /// `has(token.NAME)`.
    Has(Box<str>),
    /// `A == B` (`negate`: `A != B`).
    Eq {
        left: Term,
        right: Term,
        negate: bool,
    },
    /// `A in token.NAME`.
    In(Term, Box<str>),
}

/// A string-valued term.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Term {
    /// A capture, `channel` or `socket_id`.
    Var(Box<str>),
    /// `token.NAME`.
    Claim(Box<str>),
    /// A string literal.
    Lit(Box<str>),
}

/// What a native evaluation may read: the same names the CEL resolver
/// answers, in the same order (`socket_id` and `channel` before captures).
pub(super) struct Env<'e> {
    pub token: &'e TokenValue,
    pub socket_id: &'e str,
    pub channel: Option<&'e str>,
    pub captures: &'e [(&'e str, &'e str)],
}

/// The native form of `expr`, if all of it has one.
pub(super) fn compile(expr: &cel::IdedExpr) -> Option<Native> {
    cond(expr).map(Native::Cond).or_else(|| term(expr).map(Native::Term))
}

fn cond(expr: &cel::IdedExpr) -> Option<Cond> {
    match &expr.expr {
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Cond::Const(*b.inner())),
        Expr::Select(select) if select.test => {
            token_member(&select.operand).then(|| Cond::Has(select.field.as_str().into()))
        }
        Expr::Call(call) if call.target.is_none() => match (call.func_name.as_str(), call.args.as_slice()) {
            (operators::LOGICAL_AND, [a, b]) => Some(Cond::And(Box::new(cond(a)?), Box::new(cond(b)?))),
            (operators::LOGICAL_OR, [a, b]) => Some(Cond::Or(Box::new(cond(a)?), Box::new(cond(b)?))),
            (operators::LOGICAL_NOT, [a]) => Some(Cond::Not(Box::new(cond(a)?))),
            (operators::EQUALS, [a, b]) => Some(Cond::Eq { left: term(a)?, right: term(b)?, negate: false }),
            (operators::NOT_EQUALS, [a, b]) => {
                Some(Cond::Eq { left: term(a)?, right: term(b)?, negate: true })
            }
            (operators::IN, [a, b]) => match term(b)? {
                Term::Claim(list) => Some(Cond::In(term(a)?, list)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn term(expr: &cel::IdedExpr) -> Option<Term> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(Term::Lit(s.inner().into())),
        Expr::Ident(name) if !matches!(name.as_str(), "token" | "request" | "query" | "hook") => {
            Some(Term::Var(name.as_str().into()))
        }
        Expr::Select(select) if !select.test && token_member(&select.operand) => {
            Some(Term::Claim(select.field.as_str().into()))
        }
        _ => None,
    }
}

/// Whether `operand` is the bare `token` (so `operand.x` is a claim).
fn token_member(operand: &cel::IdedExpr) -> bool {
    matches!(&operand.expr, Expr::Ident(name) if name == "token")
}

impl Cond {
    /// The definite answer, or `None` when CEL must decide.
    pub(super) fn eval(&self, env: &Env<'_>) -> Option<bool> {
        match self {
            Cond::Const(b) => Some(*b),
            Cond::And(a, b) => match a.eval(env)? {
                false => Some(false),
                true => b.eval(env),
            },
            Cond::Or(a, b) => match a.eval(env)? {
                true => Some(true),
                false => b.eval(env),
            },
            Cond::Not(a) => a.eval(env).map(|b| !b),
            Cond::Has(name) => env.token.has_member(name),
            Cond::Eq { left, right, negate } => Some((left.eval(env)? == right.eval(env)?) != *negate),
            Cond::In(item, list) => {
                let item = item.eval(env)?;
                let list = env.token.member(list)?.downcast_ref::<CelList>()?;
                for element in list.inner() {
                    // Anything but a string: CEL's equality decides.
                    if element.downcast_ref::<CelString>()?.inner() == item {
                        return Some(true);
                    }
                }
                Some(false)
            }
        }
    }
}

impl Term {
    /// The term's string, or `None` when it is not one (or is unknown).
    pub(super) fn eval<'e>(&'e self, env: &Env<'e>) -> Option<&'e str> {
        match self {
            Term::Lit(s) => Some(s),
            Term::Var(name) => match &**name {
                "socket_id" => Some(env.socket_id),
                "channel" => env.channel,
                name => env.captures.iter().find(|(capture, _)| *capture == name).map(|(_, value)| *value),
            },
            Term::Claim(name) => Some(env.token.member(name)?.downcast_ref::<CelString>()?.inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(source: &str) -> Option<Native> {
        compile(cel::Program::compile(source).unwrap().expression())
    }

    #[test]
    fn the_common_shapes_compile_and_the_rest_do_not() {
        for source in [
            "user == token.sub",
            "has(token.org) && token.org == org",
            "has(token.docs) && doc in token.docs",
            "room in token.rooms || token.role == 'admin'",
            "!(token.sub != user) && true",
            "channel == 'private-x' || socket_id == \"1.2\"",
        ] {
            assert!(matches!(native(source), Some(Native::Cond(_))), "{source}");
        }
        // A bare claim is a term (a presence field); as an `allow` it is
        // left to CEL, which checks that it is a bool.
        for source in ["token.sub", "token.admin", "user", "'fixed'"] {
            assert!(matches!(native(source), Some(Native::Term(_))), "{source}");
        }
        for source in [
            "size(token.docs) > 0",
            "token.org == 1",
            "token.a.b == x",
            "request.origin == 'https://a'",
            "query.ok",
            "hook.allow",
            "doc in ['1', '2']",
            "token == {}",
            "token.docs.exists(d, d == doc)",
            "token['sub'] == user",
            "user.startsWith('a')",
            "user in token",
        ] {
            assert_eq!(native(source), None, "{source}");
        }
    }

    #[test]
    fn answers_are_definite_only_for_the_values_the_shape_assumes() {
        let token = TokenValue::from_json_text(
            r#"{"sub":"u1","docs":["1","2"],"mixed":[1,"2"],"n":5,"nul":null,"o":{"a":"b"}}"#,
        )
        .unwrap();
        let env = Env {
            token: &token,
            socket_id: "1.2",
            channel: Some("private-doc-2"),
            captures: &[("doc", "2")],
        };
        let cond = |source: &str| match native(source) {
            Some(Native::Cond(c)) => c.eval(&env),
            other => panic!("{source}: {other:?}"),
        };
        assert_eq!(cond("doc in token.docs"), Some(true));
        assert_eq!(cond("'3' in token.docs"), Some(false));
        assert_eq!(cond("has(token.nul) && has(token.sub) && !has(token.absent)"), Some(true));
        assert_eq!(cond("token.sub == 'u1' && token.sub != doc"), Some(true));
        assert_eq!(cond("channel == 'private-doc-2' && socket_id == '1.2'"), Some(true));
        // Left to CEL: absent claims, other types, unknown names.
        assert_eq!(cond("token.absent == doc"), None);
        assert_eq!(cond("token.n == doc"), None);
        assert_eq!(cond("doc in token.mixed"), None);
        assert_eq!(cond("doc in token.o"), None);
        assert_eq!(cond("doc in token.sub"), None);
        assert_eq!(cond("nobody == doc"), None);
        // Short-circuits as the interpreter does: the right side is not read.
        assert_eq!(cond("false && token.absent == doc"), Some(false));
        assert_eq!(cond("true || token.absent == doc"), Some(true));
        assert_eq!(cond("token.absent == doc || true"), None);
        // A token that is not an object: CEL's errors.
        let other = TokenValue::from_json(&serde_json::json!("a string"));
        let env = Env { token: &other, socket_id: "1.2", channel: None, captures: &[] };
        let Some(Native::Cond(has)) = native("has(token.sub)") else { panic!() };
        assert_eq!(has.eval(&env), None);
    }
}
