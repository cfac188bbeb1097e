//! What one client may hold of an instance: a deadline to finish sending a request body,
//! and a cap on unfinished requests per address. Without them a body shorter than its
//! `Content-Length`, or one sent a byte a second, holds a connection and a worker's
//! buffers for as long as the client likes, and one address can hold thousands.
//!
//! Slow request heads are bounded by actix-web's `client_request_timeout` (see `run`);
//! the reverse proxy in front still has to bound connections per address and buffer
//! bodies (see the README).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage;
use actix_web::HttpResponse;
use futures_util::Stream;

use super::extract::client_address;
use super::state::AppState;

/// Time a client has to send a whole request body once its head arrived.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Requests of one address an instance works on at once; more are refused at once with
/// 429 (a browser opens at most a handful; a platform's back end well under this).
pub const MAX_UNFINISHED_PER_ADDRESS: usize = 64;

/// Unfinished requests per client address, on this instance (in memory only: addresses
/// never reach the store or the logs).
#[derive(Default)]
pub struct InFlight(Mutex<HashMap<String, usize>>);

/// One request's place in [`InFlight`], given back when the request is answered.
pub struct Slot {
    map: Arc<InFlight>,
    address: String,
}

impl InFlight {
    /// Takes a place for `address`, or `None` when it holds [`MAX_UNFINISHED_PER_ADDRESS`].
    pub fn enter(self: &Arc<Self>, address: String, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(address.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            map: self.clone(),
            address,
        })
    }

    /// Unfinished requests of `address` (for tests).
    pub fn held(&self, address: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(address).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// A request body that fails with a timeout once its deadline has passed.
struct Deadline<S> {
    body: S,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0")
}

/// The middleware: a place per unfinished request of an address, and a deadline on the
/// request body.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let (Some(inflight), Some(state)) = (
        req.app_data::<web::Data<Arc<InFlight>>>().cloned(),
        req.app_data::<web::Data<AppState>>(),
    ) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let address = client_address(req.request(), state.settings().trust_forwarded_for);
    let Some(slot) = inflight.enter(address, MAX_UNFINISHED_PER_ADDRESS) else {
        metrics::counter!("broker_rate_limited_total", "scope" => "unfinished_requests")
            .increment(1);
        let refused = HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "1"))
            .insert_header((header::CONNECTION, "close"))
            .json(serde_json::json!({
                "error": "too_many_requests",
                "error_description": "too many unfinished requests from this address",
            }));
        return Ok(req.into_response(refused).map_into_right_body());
    };
    if has_body(&req) {
        let body = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline {
                body,
                timer: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
            }),
        });
    }
    let res = next.call(req).await;
    drop(slot);
    Ok(res?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_places_and_gets_them_back() {
        let inflight = Arc::new(InFlight::default());
        let a: Vec<Slot> = (0..3)
            .filter_map(|_| inflight.enter("a".into(), 3))
            .collect();
        assert_eq!(a.len(), 3);
        assert!(
            inflight.enter("a".into(), 3).is_none(),
            "a fourth is refused"
        );
        assert!(
            inflight.enter("b".into(), 3).is_some(),
            "another address is not"
        );
        drop(a);
        assert_eq!(inflight.held("a"), 0);
        assert!(inflight.enter("a".into(), 3).is_some());
    }
}
