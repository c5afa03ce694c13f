//! Reading an auth request body: the form encoding pusher-js sends
//! (`socket_id=…&channel_name=…` plus any `params`), or a JSON object.
//! Both become the same list of string pairs; duplicates are kept so that a
//! duplicated `socket_id`/`channel_name` can be refused, never silently
//! resolved one way or the other.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};

use super::error::ApiError;
use crate::reason::Reason;

fn unsupported() -> ApiError {
    ApiError::new(
        Reason::UnsupportedMediaType,
        "send application/x-www-form-urlencoded (as pusher-js does) or application/json",
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(Reason::BodyTooLarge, format!("the request body is over {limit} bytes"))
}

/// Reads a whole body of at most `limit` bytes within `timeout` (the admin
/// API's and the publish proxy's bodies, which are not forms).
pub(crate) async fn read_bytes<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match within(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large(limit)),
        Err(_) => Err(ApiError::new(Reason::RequestTimeout, "the request body did not arrive in time")),
    }
}

/// `fut` within `limit` of its first poll. A body that came in the same
/// read as its head (nearly every auth request) is ready at once and costs
/// no timer: `tokio::time::timeout` reads the clock, takes the runtime's
/// handle and builds a timer entry before it polls anything.
async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
        std::task::Poll::Ready(out) => Ok(out),
        std::task::Poll::Pending => tokio::time::timeout(limit, fut).await,
    }
}

/// Decoded body fields, in the order they were sent.
#[derive(Debug, Default)]
pub struct Fields {
    /// Every `(name, value)` pair. JSON values that are not strings are left
    /// out, except for the Pusher fields, which must be strings.
    pub pairs: Vec<(String, String)>,
}

impl Fields {
    /// The single value of `name`: `None` when absent, 400 when repeated.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(ApiError::new(
                        Reason::DuplicateField,
                        format!("`{name}` is sent more than once"),
                    ));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    /// The single value of `name`, required.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.one(name)?.ok_or_else(|| ApiError::new(Reason::MissingField, format!("`{name}` is missing")))
    }

    /// Batch channel names (`channel_name[0]`, `channel_name[1]`, …, the
    /// pusher-js-auth plugin's format), in index order. Empty when none.
    /// More than `max` is refused before anything else is looked at, and
    /// the duplicate checks take linear time: the body is unauthenticated.
    pub fn batch_channels(&self, max: usize) -> Result<Vec<&str>, ApiError> {
        let count = self.pairs.iter().filter(|(k, _)| k.starts_with("channel_name[")).count();
        if count > max {
            return Err(ApiError::new(Reason::BatchTooLarge, format!("at most {max} channels per batch")));
        }
        let mut indexed: Vec<(usize, &str)> = Vec::with_capacity(count);
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix("channel_name[") else { continue };
            let index = rest
                .strip_suffix(']')
                .filter(|i| !i.is_empty() && i.len() <= 4 && i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse::<usize>().ok())
                .ok_or_else(|| ApiError::new(Reason::InvalidField, "batch fields are `channel_name[N]`"))?;
            indexed.push((index, v.as_str()));
        }
        indexed.sort_unstable_by_key(|(i, _)| *i);
        if let Some(pair) = indexed.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ApiError::new(
                Reason::DuplicateField,
                format!("`channel_name[{}]` is sent more than once", pair[0].0),
            ));
        }
        let channels: Vec<&str> = indexed.into_iter().map(|(_, v)| v).collect();
        // The answer is a JSON object keyed by channel: a repeated channel
        // would give a repeated key. Sorted copies are compared (n log n,
        // without hashing ten short names).
        let mut sorted = channels.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(ApiError::new(Reason::DuplicateField, "a channel is listed twice in the batch"));
        }
        Ok(channels)
    }
}

/// The body encodings we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Form,
    Json,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported());
    };
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(unsupported());
    }
    let ct = ct.to_str().map_err(|_| unsupported())?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Encoding::Form)
    } else if media.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(unsupported())
    }
}

/// Reads and decodes the body: content type first (415), then the size
/// limit (413, checked against `Content-Length` before reading and while
/// reading), then the time limit (408), then the syntax (400).
pub async fn read<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Fields, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let enc = encoding(headers)?;
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok())
        && len.parse::<u64>().map_or(true, |n| n > limit as u64)
    {
        return Err(too_large(limit));
    }
    let collected = within(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::new(Reason::RequestTimeout, "the request body did not arrive in time"))?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(too_large(limit));
        }
        Err(_) => return Err(ApiError::new(Reason::InvalidBody, "the request body could not be read")),
    };
    match enc {
        Encoding::Form => parse_form(&bytes),
        Encoding::Json => parse_json(&bytes),
    }
}

/// Form decoding. Keys and values must be UTF-8 after percent-decoding
/// (and may not hold U+FFFD, which a lossy decoder would have put there).
///
/// The pairs are `form_urlencoded::parse`'s — `&`-separated, empty pieces
/// skipped, split at the first `=`, `+` a space, `%XX` a byte and any
/// other `%` itself — decoded in one pass over each part (the fuzz target
/// `request_form` compares the two); the usual part, with neither `%` nor
/// `+`, is copied as it is.
pub fn parse_form(bytes: &[u8]) -> Result<Fields, ApiError> {
    // pusher-js sends two fields (plus `params`); a batch, one per channel.
    let mut pairs = Vec::with_capacity(4);
    for piece in bytes.split(|&b| b == b'&').filter(|piece| !piece.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &piece[piece.len()..]),
        };
        pairs.push((form_part(name)?, form_part(value)?));
    }
    Ok(Fields { pairs })
}

/// One decoded name or value of a form.
fn form_part(part: &[u8]) -> Result<String, ApiError> {
    let invalid = || ApiError::new(Reason::InvalidBody, "the form is not valid UTF-8");
    if !crate::scan::form_coded(part) {
        // Valid UTF-8 without U+FFFD.
        return std::str::from_utf8(part).map(str::to_owned).map_err(|_| invalid());
    }
    let mut out = Vec::with_capacity(part.len());
    let mut rest = part;
    // Copied a run at a time between the bytes that decode.
    while let Some(at) = rest.iter().position(|&b| b == b'%' || b == b'+') {
        out.extend_from_slice(&rest[..at]);
        if rest[at] == b'+' {
            out.push(b' ');
            rest = &rest[at + 1..];
            continue;
        }
        match (rest.get(at + 1).copied().and_then(hex), rest.get(at + 2).copied().and_then(hex)) {
            (Some(high), Some(low)) => {
                out.push(high << 4 | low);
                rest = &rest[at + 3..];
            }
            // A `%` without two hex digits stays as it is.
            _ => {
                out.push(b'%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    let text = String::from_utf8(out).map_err(|_| invalid())?;
    // U+FFFD is EF BF BD: a scan for its first byte (vectorized, no early
    // exit) spares most texts the substring search.
    if text.bytes().fold(false, |lead, b| lead | (b == 0xEF)) && text.contains('\u{FFFD}') {
        return Err(invalid());
    }
    Ok(text)
}

/// A hex digit's value.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// JSON decoding: a flat object. Duplicated keys are kept (and refused later
/// for the Pusher fields); the Pusher fields must be strings.
pub fn parse_json(bytes: &[u8]) -> Result<Fields, ApiError> {
    let entries: JsonPairs = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::new(Reason::InvalidBody, "the body is not a JSON object"))?;
    let mut pairs = Vec::with_capacity(entries.0.len());
    for (k, v) in entries.0 {
        match v {
            serde_json::Value::String(s) => pairs.push((k, s)),
            _ if k == "socket_id" || k == "channel_name" || k.starts_with("channel_name[") => {
                return Err(ApiError::new(Reason::InvalidField, format!("`{k}` must be a string")));
            }
            _ => {}
        }
    }
    Ok(Fields { pairs })
}

/// A JSON object as a list of entries, duplicates kept.
struct JsonPairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<JsonPairs, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = a.next_entry::<String, serde_json::Value>()? {
                    if out.len() >= 256 {
                        return Err(serde::de::Error::custom("too many fields"));
                    }
                    out.push(entry);
                }
                Ok(JsonPairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ready body takes no timer: this runtime has none, and
    /// `tokio::time::timeout` would panic in it. A pending one still gets
    /// its deadline.
    #[test]
    fn a_body_ready_at_once_is_read_without_a_timer() {
        let no_timers = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let body = http_body_util::Full::new(Bytes::from_static(b"socket_id=1.2&channel_name=private-a"));
        let headers = HeaderMap::from_iter([(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        )]);
        let fields = no_timers.block_on(read(&headers, body, 1024, Duration::from_secs(1))).unwrap();
        assert_eq!(fields.required("channel_name").unwrap(), "private-a");

        let timers =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let late = timers.block_on(within(Duration::from_secs(5), std::future::pending::<()>()));
        assert!(late.is_err());
    }

    #[test]
    fn form_as_pusher_js_sends_it() {
        let f = parse_form(
            b"socket_id=1234.5678&channel_name=presence-a_b-c%3Dd%40e%2Cf.g%3Bh&token=abc&a=1&a=2",
        )
        .unwrap();
        assert_eq!(f.required("socket_id").unwrap(), "1234.5678");
        assert_eq!(f.required("channel_name").unwrap(), "presence-a_b-c=d@e,f.g;h");
        assert_eq!(f.one("token").unwrap(), Some("abc"));
        assert_eq!(f.one("a").unwrap_err().reason(), "duplicate_field");
        assert_eq!(f.required("missing").unwrap_err().reason(), "missing_field");
    }

    #[test]
    fn form_rejects_invalid_utf8() {
        assert_eq!(parse_form(b"socket_id=%FF").unwrap_err().reason(), "invalid_body");
        assert_eq!(parse_form(b"a=\xff").unwrap_err().reason(), "invalid_body");
        assert_eq!(parse_form(b"a=%EF%BF%BD").unwrap_err().reason(), "invalid_body");
        assert_eq!(parse_form("a=\u{FFFD}".as_bytes()).unwrap_err().reason(), "invalid_body");
    }

    #[test]
    fn forms_decode_as_form_urlencoded_does() {
        let cases: &[&[u8]] = &[
            b"",
            b"&",
            b"&&a=1&&",
            b"a",
            b"a=",
            b"=b",
            b"=",
            b"a=b=c",
            b"a+b=c+d",
            b"%2B=%2b+%20",
            b"a=%",
            b"a=%4",
            b"a=%4g",
            b"a=%g4%41",
            b"a=%%41",
            b"a=100%25&b=%C3%A9t%C3%A9",
            "k=\u{e9}t\u{e9}&\u{1F600}=x".as_bytes(),
            b"socket_id=1234.5678&channel_name=presence-a_b-c%3Dd%40e%2Cf.g%3Bh",
            b"channel_name%5B0%5D=private-a&channel_name%5b1%5d=private-b",
            b"a=1;b=2",
            b"a=%0A%00%7F",
            // Longer than a word, with the bytes that decode at every offset.
            b"abcdefgh+ijklmnop%41qrstuvw=xyz0123%",
            b"abcdefg%=12345678+&12345678%4=abcdefghijklmno%2",
            "aaaaaaa\u{e9}=bbbbbbbbbbbbbbbb+&ccccccccccccccc\u{e9}=d".as_bytes(),
            b"channel_name=private-encrypted-abcdefgh%2Bx%5Bxxxxxxxxxxxx",
        ];
        for case in cases {
            let ours = parse_form(case).unwrap().pairs;
            let theirs: Vec<(String, String)> =
                form_urlencoded::parse(case).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn json_keeps_duplicates_and_wants_strings() {
        let f = parse_json(br#"{"socket_id":"1.2","socket_id":"3.4"}"#).unwrap();
        assert_eq!(f.one("socket_id").unwrap_err().reason(), "duplicate_field");
        assert_eq!(parse_json(br#"{"socket_id":1.2}"#).unwrap_err().reason(), "invalid_field");
        assert_eq!(parse_json(br#"["a"]"#).unwrap_err().reason(), "invalid_body");
        assert_eq!(parse_json(b"{").unwrap_err().reason(), "invalid_body");
        let f = parse_json(br#"{"channel_name":"private-a","extra":{"x":1}}"#).unwrap();
        assert_eq!(f.pairs.len(), 1);
    }

    #[test]
    fn batch_fields_in_index_order() {
        let f =
            parse_form(b"socket_id=1.2&channel_name%5B1%5D=private-b&channel_name%5B0%5D=private-a").unwrap();
        assert_eq!(f.batch_channels(50).unwrap(), vec!["private-a", "private-b"]);
        let f = parse_form(b"channel_name%5Bx%5D=a").unwrap();
        assert_eq!(f.batch_channels(50).unwrap_err().reason(), "invalid_field");
        let f = parse_form(b"channel_name%5B0%5D=a&channel_name%5B0%5D=b").unwrap();
        assert_eq!(f.batch_channels(50).unwrap_err().reason(), "duplicate_field");
        let f = parse_form(b"channel_name%5B0%5D=a&channel_name%5B1%5D=a").unwrap();
        assert_eq!(f.batch_channels(50).unwrap_err().reason(), "duplicate_field");
    }

    #[test]
    fn batch_size_is_checked_before_the_fields_are_examined() {
        // Over the cap: refused as too large even though the entries are
        // also malformed and duplicated (nothing was looked at yet).
        let body: String = (0..600).map(|_| "channel_name%5B0%5D=x&").collect();
        let f = parse_form(body.as_bytes()).unwrap();
        assert_eq!(f.batch_channels(50).unwrap_err().reason(), "batch_too_large");
        // Within the cap, a repeat far apart is still found.
        let mut body: String = (0..40).map(|i| format!("channel_name%5B{i}%5D=private-c{i}&")).collect();
        body.push_str("channel_name%5B40%5D=private-c3");
        let f = parse_form(body.as_bytes()).unwrap();
        assert_eq!(f.batch_channels(50).unwrap_err().reason(), "duplicate_field");
        body.truncate(body.len() - 1);
        body.push('x');
        let f = parse_form(body.as_bytes()).unwrap();
        assert_eq!(f.batch_channels(50).unwrap().len(), 41);
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(encoding(&h), Err(unsupported()));
        h.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=UTF-8".parse().unwrap());
        assert_eq!(encoding(&h), Ok(Encoding::Form));
        h.insert(header::CONTENT_TYPE, "Application/JSON".parse().unwrap());
        assert_eq!(encoding(&h), Ok(Encoding::Json));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(encoding(&h), Err(unsupported()));
        h.insert(header::CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap());
        assert_eq!(encoding(&h), Err(unsupported()));
    }
}
