//! Conversions between JSON (claims, `user_info` output) and CEL values.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;
use cel::objects::Key;

/// Converts a JSON value (token claims) to a CEL value. Integers become
/// `int` (or `uint` above `i64::MAX`), other numbers `double`.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(o) => object_to_cel(o),
    }
}

/// Converts a JSON object to a CEL map.
pub fn object_to_cel(o: &serde_json::Map<String, serde_json::Value>) -> Value {
    let map: HashMap<Key, Value> =
        o.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v))).collect();
    Value::from(map)
}

/// Converts a CEL value to JSON for `user_info`/`watchlist`. Map keys come
/// out sorted (CEL maps have no order). Values with no JSON form
/// (functions, bytes, non-finite doubles) give `None`.
pub fn cel_to_json(v: &Value) -> Option<serde_json::Value> {
    Some(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Value::Number(serde_json::Number::from_f64(*f)?),
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(cel_to_json).collect::<Option<_>>()?),
        Value::Map(m) => {
            let mut entries: Vec<(String, serde_json::Value)> =
                m.map.iter().map(|(k, v)| Some((key_string(k), cel_to_json(v)?))).collect::<Option<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        _ => return None,
    })
}

fn key_string(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.as_str().to_owned(),
    }
}

/// A short, value-free description of a CEL value's type, for error messages
/// and audit lines (claim values never go there).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values() {
        let j: serde_json::Value = serde_json::json!({
            "b": [1, "x", true, null, 1.5],
            "a": {"z": 1, "y": {"k": "v"}},
            "big": 18446744073709551615u64
        });
        let back = cel_to_json(&json_to_cel(&j)).unwrap();
        // Keys come back sorted; values are equal.
        assert_eq!(back, j);
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "big"]);
    }
}
