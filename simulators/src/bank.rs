//! Simulated bank verification services ("four elements": name, ID number, card number,
//! reserved phone), answering the contract of the broker's `bank-card` connector.
//!
//! * `POST /verify` — the aggregator: the bank is the `bank` field of the request;
//! * `POST /banks/{bank}/verify` — one bank's own service;
//! * `POST /control/outage` with `{"bank": "abc", "down": true}` — makes a bank answer 503
//!   (for demos and tests of "bank unavailable").
//!
//! Request: `{"bank", "name", "id_number", "card_number", "phone", "request_id"}`. Answer
//! `200 {"result": "match" | "mismatch" | "card_not_found" | "not_debit" |
//! "card_inactive"}`; `401` without the right bearer token; `400` for a malformed request;
//! `503` while the bank is down. Nothing is logged.

use std::collections::HashSet;
use std::sync::Mutex;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::people::{people, phone_digits, same_name, CardKind};

/// The banks the simulator knows (the 12 partner banks of the Shenzhen FAQ).
pub const BANKS: [&str; 12] = [
    "ccb", "icbc", "boc", "abc", "cmb", "pingan", "srcb", "psbc", "bocom", "citic", "ceb", "cmbc",
];

struct Banks {
    api_key: Option<String>,
    down: Mutex<HashSet<String>>,
}

#[derive(Deserialize)]
struct VerifyRequest {
    bank: String,
    name: String,
    id_number: String,
    card_number: String,
    phone: String,
    #[allow(dead_code)]
    #[serde(default)]
    request_id: String,
}

fn authorised(req: &HttpRequest, key: &Option<String>) -> bool {
    let Some(key) = key else { return true };
    req.headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(key.as_bytes())))
}

/// The answer of the banks' records to a request.
fn check(r: &VerifyRequest) -> &'static str {
    let card = people().iter().find_map(|p| {
        p.cards
            .iter()
            .find(|c| c.number == r.card_number && c.bank == r.bank)
            .map(|c| (p, c))
    });
    let Some((person, card)) = card else {
        return "card_not_found";
    };
    if card.kind == CardKind::Credit {
        return "not_debit";
    }
    if !card.active {
        return "card_inactive";
    }
    let id_ok = person.citizen_id.eq_ignore_ascii_case(r.id_number.trim());
    let phone_ok = phone_digits(card.reserved_phone) == phone_digits(&r.phone);
    if id_ok && phone_ok && same_name(person.name, &r.name) {
        "match"
    } else {
        "mismatch"
    }
}

async fn verify_with(
    req: HttpRequest,
    banks: web::Data<Banks>,
    body: web::Bytes,
    path_bank: Option<String>,
) -> HttpResponse {
    if !authorised(&req, &banks.api_key) {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    }
    let Ok(r) = serde_json::from_slice::<VerifyRequest>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    if path_bank.as_ref().is_some_and(|b| *b != r.bank) || !BANKS.contains(&r.bank.as_str()) {
        return HttpResponse::NotFound().json(json!({"error": "unknown_bank"}));
    }
    let down = banks
        .down
        .lock()
        .map(|d| d.contains(&r.bank))
        .unwrap_or(false);
    if down {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "bank_unavailable"}));
    }
    HttpResponse::Ok().json(json!({ "result": check(&r) }))
}

async fn verify(req: HttpRequest, banks: web::Data<Banks>, body: web::Bytes) -> HttpResponse {
    verify_with(req, banks, body, None).await
}

async fn verify_bank(
    req: HttpRequest,
    banks: web::Data<Banks>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    verify_with(req, banks, body, Some(path.into_inner())).await
}

#[derive(Deserialize)]
struct Outage {
    bank: String,
    down: bool,
}

async fn outage(banks: web::Data<Banks>, body: web::Json<Outage>) -> HttpResponse {
    if let Ok(mut d) = banks.down.lock() {
        if body.down {
            d.insert(body.bank.clone());
        } else {
            d.remove(&body.bank);
        }
    }
    HttpResponse::NoContent().finish()
}

/// Serves the simulated banks on `addr`; requests need `Authorization: Bearer {api_key}`
/// when one is given.
pub fn serve(addr: &str, api_key: Option<String>) -> std::io::Result<actix_web::dev::Server> {
    let banks = web::Data::new(Banks {
        api_key,
        down: Mutex::new(HashSet::new()),
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(banks.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/verify", web::post().to(verify))
            .route("/banks/{bank}/verify", web::post().to(verify_bank))
            .route("/control/outage", web::post().to(outage))
    })
    .workers(1)
    .bind(addr)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bank: &str, name: &str, id: &str, card: &str, phone: &str) -> VerifyRequest {
        VerifyRequest {
            bank: bank.into(),
            name: name.into(),
            id_number: id.into(),
            card_number: card.into(),
            phone: phone.into(),
            request_id: String::new(),
        }
    }

    #[test]
    fn the_four_elements() {
        let wei = ("王伟", "110101199003074517", "+8613800138000");
        assert_eq!(
            check(&req("icbc", wei.0, wei.1, "6222020200112345679", wei.2)),
            "match"
        );
        assert_eq!(
            check(&req("icbc", "王五", wei.1, "6222020200112345679", wei.2)),
            "mismatch"
        );
        assert_eq!(
            check(&req("cmb", wei.0, wei.1, "4392250055006789018", wei.2)),
            "not_debit"
        );
        assert_eq!(
            check(&req("psbc", wei.0, wei.1, "6217990066007890129", wei.2)),
            "card_inactive"
        );
        assert_eq!(
            check(&req("bocom", wei.0, wei.1, "6222600088009012348", wei.2)),
            "card_not_found"
        );
        // Bình's bank still has his old phone.
        assert_eq!(
            check(&req(
                "abc",
                "Lê Văn Bình",
                "036089004321",
                "6228480033004567898",
                "+84987654321"
            )),
            "mismatch"
        );
    }
}
