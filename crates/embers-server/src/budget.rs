//! Backpressure: the in-flight ingest byte budget (429 when full) and the bounded pool of
//! query slots (503 when every slot stays busy past a short wait). Both answer at once
//! with `Retry-After` rather than letting latency and memory grow without bound; the
//! agent and Pyroscope's clients retry such answers.
//!
//! The ingest middleware also enforces each tenant's byte rate (issue 13), with the
//! token buckets of [`crate::limits::rate`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::{Metrics, Rejection, RouteLabel};
use crate::tenant::TenantId;
use crate::AppState;

/// Bytes of ingest request bodies being received, decoded and stored at once.
#[derive(Debug)]
pub struct InflightBytes {
    bytes: Arc<Semaphore>,
    total: usize,
    /// What a body without `Content-Length` reserves (it may grow to this).
    unknown_length: usize,
}

impl InflightBytes {
    /// A budget of `total` bytes; bodies of unknown length count as `max_body_bytes`.
    pub fn new(total: usize, max_body_bytes: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        InflightBytes {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            unknown_length: max_body_bytes.clamp(1, total),
        }
    }

    /// Bytes reserved by requests in flight now.
    pub fn in_use(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// Reserves `length` bytes (or the unknown-length charge), without waiting.
    pub fn admit(&self, length: Option<usize>) -> Result<OwnedSemaphorePermit, ApiError> {
        let want = length.unwrap_or(self.unknown_length).max(1);
        if want > self.total {
            return Err(ApiError::too_large(format!(
                "a body of {want} bytes is larger than the whole in-flight ingest budget \
                 ({} bytes, max_inflight_ingest_bytes)",
                self.total
            )));
        }
        let want = u32::try_from(want).map_err(|_| ApiError::too_large("body too large"))?;
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(want)
            .map_err(|_| {
                ApiError::too_many(format!(
                    "the server is receiving {} bytes of profiles already \
                     (max_inflight_ingest_bytes); retry shortly",
                    self.total
                ))
                .because(Rejection::IngestInflight)
            })
    }
}

/// Middleware on the ingest routes: checks the tenant's ingest byte rate (429 with the
/// seconds until its bucket refills) and holds the body's share of the in-flight budget
/// until the response is ready (stored and durable, or refused). The tenant is known:
/// `access::check` runs before every route.
pub async fn ingest_budget(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let tenant = request
        .extensions()
        .get::<TenantId>()
        .cloned()
        .unwrap_or_else(TenantId::default_tenant);
    // The in-flight budget first: refusing there leaves the tenant's bucket untouched.
    let admitted = state.ingest_budget.admit(length).and_then(|permit| {
        let meter = state.ingest_rate.admit(&tenant, length)?;
        Ok((permit, meter))
    });
    match admitted {
        Ok((permit, meter)) => {
            let request = match meter {
                Some(meter) => request.map(|body| meter.wrap(body)),
                None => request,
            };
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(e) => refuse(&state, request, e).await,
    }
}

/// Answers a refused ingest request in its route's shape (Connect, OTLP, plain text),
/// after draining its body.
async fn refuse(state: &AppState, request: Request, e: ApiError) -> Response {
    if e.rejection == Some(Rejection::IngestRate) {
        tracing::debug!(reason = %e.message, "ingest refused");
    }
    state.metrics.ingest_error();
    // The Connect services behind this budget answer in Connect's JSON error shape.
    let connect = ["/push.v1.", "/adhocprofiles.v1."]
        .iter()
        .any(|service| request.uri().path().starts_with(service));
    let (parts, body) = request.into_parts();
    drain(body, state.ingest_budget.unknown_length).await;
    if connect {
        return e.connect().into_response();
    }
    crate::ingest::otlp::refused(parts.uri.path(), &parts.headers, e)
        .unwrap_or_else(IntoResponse::into_response)
}

/// Reads and drops a refused body (at most `limit` bytes, for at most a few seconds), so
/// the client finishes sending and reads the 429 instead of a connection reset (closing a
/// socket with unread bytes resets it). Nothing is kept: memory stays flat.
pub(crate) async fn drain(body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
}

/// Middleware on every route: labels the response with its route pattern for
/// `embers_http_requests_total`, and counts store refusals by reason.
pub async fn label_route(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Arc::<str>::from(p.as_str()));
    let mut response = next.run(request).await;
    if let Some(&why) = response.extensions().get::<Rejection>() {
        metrics.rejected(why);
    }
    if let Some(route) = route {
        response.extensions_mut().insert(RouteLabel(route));
    }
    response
}

/// Query slots: at most `slots` CPU-heavy queries run at once, on the blocking pool.
#[derive(Debug)]
pub struct QueryGate {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl QueryGate {
    /// `slots` concurrent queries; a query waits at most `wait` for one.
    pub fn new(slots: usize, wait: Duration) -> Self {
        QueryGate {
            slots: Arc::new(Semaphore::new(slots.clamp(1, Semaphore::MAX_PERMITS))),
            wait,
        }
    }

    /// Runs `f` on the blocking pool once a slot is free, or answers 503.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot =
            match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    return Err(ApiError::unavailable(
                        "every query slot is busy (max_concurrent_queries); retry shortly",
                    )
                    .because(Rejection::QueryQueue))
                }
            };
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f()
        })
        .await
        .map_err(ApiError::internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_query_pool_answers_503_and_frees_its_slot() {
        let gate = Arc::new(QueryGate::new(1, Duration::from_millis(10)));
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let busy = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.run(move || {
                    let _ = started.send(());
                    let _ = release.recv();
                    Ok(1)
                })
                .await
            })
        };
        running.await.unwrap();
        let refused = gate.run(|| Ok(2)).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert_eq!(refused.retry_after, Some(1));
        assert_eq!(refused.rejection, Some(Rejection::QueryQueue));
        hold.send(()).unwrap();
        assert_eq!(busy.await.unwrap().unwrap(), 1);
        assert_eq!(gate.run(|| Ok(3)).await.unwrap(), 3);
    }

    #[test]
    fn the_ingest_budget_admits_by_bytes() {
        let budget = InflightBytes::new(1000, 600);
        let a = budget.admit(Some(400)).unwrap();
        assert_eq!(budget.in_use(), 400);
        // Unknown length counts as the largest body.
        let b = budget.admit(None).unwrap();
        let refused = budget.admit(Some(1)).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(budget.admit(Some(1001)).unwrap_err().status.as_u16(), 413);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
    }
}
