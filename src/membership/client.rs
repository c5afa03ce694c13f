//! One bounded HTTP exchange with the app (session endpoint, decision
//! hook): no retry, no redirect followed, the whole exchange (connect,
//! head, body) within `timeout`, the body capped.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use super::breaker::Permit;
use super::{FaultKind, LookupError};
use crate::upstream::HttpsClient;

/// The app's answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// Sends `req`; a body larger than `max_body` is a [`FaultKind::BadAnswer`].
pub(crate) async fn exchange(
    client: &HttpsClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Reply, LookupError> {
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| LookupError::unavailable(FaultKind::Unreachable, error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max_body).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                LookupError::unavailable(
                    FaultKind::BadAnswer,
                    format!("the answer is larger than {max_body} bytes"),
                )
            } else {
                LookupError::unavailable(FaultKind::Unreachable, format!("reading the answer: {e}"))
            }
        })?;
        Ok(Reply { status: parts.status, headers: parts.headers, body: body.to_bytes() })
    };
    tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
        Err(LookupError::unavailable(
            FaultKind::Timeout,
            format!("no answer within {}", humantime::format_duration(timeout)),
        ))
    })
}

/// One call of the app under a breaker's `permit`: `req` (or the error of
/// building it) is sent with [`exchange`], the reply read by `read`, and
/// the outcome (a failed read included) reported to the breaker.
pub(crate) async fn call<T>(
    client: &HttpsClient,
    req: http::Result<http::Request<Full<Bytes>>>,
    timeout: Duration,
    max_body: usize,
    permit: Permit<'_>,
    read: impl FnOnce(&Reply) -> Result<T, LookupError>,
) -> Result<T, LookupError> {
    let req = req
        .map_err(|e| LookupError::unavailable(FaultKind::BadAnswer, format!("building the request: {e}")))?;
    let answer = exchange(client, req, timeout, max_body).await.and_then(|reply| read(&reply));
    match &answer {
        Ok(_) => permit.success(tokio::time::Instant::now()),
        Err(_) => permit.failure(tokio::time::Instant::now()),
    }
    answer
}

/// The error and its causes, `: `-separated (hyper's top-level message
/// alone is only "client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
