//! A simulated SMS gateway that keeps the messages instead of sending them, so tests and
//! demo users can read their one-time codes.
//!
//! * `POST /send` — the gateway contract of the broker: `{"to", "text", "reference"}` →
//!   `202 {"id"}`; `401` without the right bearer token; `400` for a malformed number;
//!   `503` while congested (see below);
//! * `GET /messages?to=+84901234567` — the last messages to a number, newest first (JSON);
//! * `GET /inbox?to=…` — the same as a page: the demo's stand-in for the citizen's phone;
//! * `POST /control/drop` with `{"to": "+84…", "count": 1}` — loses the next messages to a
//!   number (the FAQ's "code not received" when the SMS platform was congested);
//! * `POST /control/congested` with `{"congested": true}` — answers 503 to every send.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::people::phone_digits;

/// Messages kept in all.
const KEEP: usize = 1000;

/// A captured message.
#[derive(Debug, Clone, Serialize)]
pub struct Sms {
    /// Id given by the gateway.
    pub id: u64,
    /// Recipient.
    pub to: String,
    /// Text.
    pub text: String,
    /// Unix time in seconds.
    pub at: u64,
}

#[derive(Default)]
struct Inbox {
    next: u64,
    messages: VecDeque<Sms>,
    drop_next: HashMap<String, u32>,
    congested: bool,
}

struct Gateway {
    api_key: Option<String>,
    inbox: Mutex<Inbox>,
}

#[derive(Deserialize)]
struct Send {
    to: String,
    text: String,
    #[allow(dead_code)]
    #[serde(default)]
    reference: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn send(req: HttpRequest, gw: web::Data<Gateway>, body: web::Bytes) -> HttpResponse {
    if let Some(key) = &gw.api_key {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(key.as_bytes())));
        if !ok {
            return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
        }
    }
    let Ok(m) = serde_json::from_slice::<Send>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    let digits = phone_digits(&m.to);
    if !m.to.starts_with('+') || !(8..=15).contains(&digits.len()) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_number"}));
    }
    let Ok(mut inbox) = gw.inbox.lock() else {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "busy"}));
    };
    if inbox.congested {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "congested"}));
    }
    inbox.next += 1;
    let id = inbox.next;
    let lost = match inbox.drop_next.get_mut(&digits) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    if !lost {
        inbox.messages.push_front(Sms {
            id,
            to: format!("+{digits}"),
            text: m.text,
            at: now(),
        });
        inbox.messages.truncate(KEEP);
    }
    // Accepted either way: the gateway does not know the message will be lost.
    HttpResponse::Accepted().json(json!({ "id": id.to_string() }))
}

#[derive(Deserialize)]
struct ToQuery {
    #[serde(default)]
    to: String,
}

/// Whether a number as a citizen writes it (`+86 138 0013 8000`, `13800138000`,
/// `0901234567`) is the international number a message was sent to: the same digits, or
/// its national part (without the trunk `0`) at the end of them.
fn same_phone(written: &str, sent_to: &str) -> bool {
    let written = phone_digits(written);
    let national = written.trim_start_matches('0');
    let sent = phone_digits(sent_to);
    !written.is_empty() && (sent == written || (national.len() >= 7 && sent.ends_with(national)))
}

fn messages_to(gw: &Gateway, to: &str) -> Vec<Sms> {
    gw.inbox
        .lock()
        .map(|i| {
            i.messages
                .iter()
                .filter(|m| same_phone(to, &m.to))
                .take(20)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn messages(gw: web::Data<Gateway>, q: web::Query<ToQuery>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "messages": messages_to(&gw, &q.to) }))
}

async fn inbox(gw: web::Data<Gateway>, q: web::Query<ToQuery>) -> HttpResponse {
    let list: String = messages_to(&gw, &q.to)
        .iter()
        .map(|m| {
            format!(
                "<li class=sms><span class=text>{}</span></li>",
                escape(&m.text)
            )
        })
        .collect();
    let body = if q.to.is_empty() {
        String::new()
    } else if list.is_empty() {
        format!(
            "<p id=empty>No messages to {} yet. Reload this page after requesting a code.</p>",
            escape(&q.to)
        )
    } else {
        format!(
            "<h2>Messages to {}</h2><ul id=messages>{list}</ul>",
            escape(&q.to)
        )
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <title>SMS inbox (simulated)</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}\
             li.sms{{background:#ddf4ff;border-radius:10px;padding:.7rem;margin:.5rem 0;list-style:none}}ul{{padding:0}}</style></head><body>\
             <h1>SMS inbox (simulated)</h1><p>This page stands for the citizen's phone in the demo. Enter the phone number you gave the bank (e.g. 13800138000 or +8613800138000).</p>\
             <form method=get action=/inbox><input name=to id=to value=\"{}\" placeholder=\"+8613800138000\"> <button id=show>Show messages</button></form>{body}</body></html>",
            escape(&q.to)
        ))
}

#[derive(Deserialize)]
struct Drop {
    to: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

async fn drop_next(gw: web::Data<Gateway>, body: web::Json<Drop>) -> HttpResponse {
    if let Ok(mut i) = gw.inbox.lock() {
        i.drop_next.insert(phone_digits(&body.to), body.count);
    }
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct Congested {
    congested: bool,
}

async fn congested(gw: web::Data<Gateway>, body: web::Json<Congested>) -> HttpResponse {
    if let Ok(mut i) = gw.inbox.lock() {
        i.congested = body.congested;
    }
    HttpResponse::NoContent().finish()
}

/// Serves the simulated SMS gateway on `addr`; `POST /send` needs
/// `Authorization: Bearer {api_key}` when one is given.
pub fn serve(addr: &str, api_key: Option<String>) -> std::io::Result<actix_web::dev::Server> {
    let gw = web::Data::new(Gateway {
        api_key,
        inbox: Mutex::new(Inbox::default()),
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(gw.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/send", web::post().to(send))
            .route("/messages", web::get().to(messages))
            .route("/inbox", web::get().to(inbox))
            .route("/control/drop", web::post().to(drop_next))
            .route("/control/congested", web::post().to(congested))
    })
    .workers(1)
    .bind(addr)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_finds_a_number_as_citizens_write_it() {
        for written in [
            "+8613800138000",
            "13800138000",
            "138 0013 8000",
            "+86 138-0013-8000",
        ] {
            assert!(same_phone(written, "+8613800138000"), "{written}");
        }
        assert!(same_phone("0901234567", "+84901234567"));
        assert!(!same_phone("13800138001", "+8613800138000"));
        assert!(!same_phone("8000", "+8613800138000"));
        assert!(!same_phone("", "+8613800138000"));
    }
}
