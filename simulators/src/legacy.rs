//! The simulated old portal's accounts API (contract of the broker's `legacy-accounts`
//! connector in API mode): `POST /login` with `{"username", "password"}` answers
//! `{"result": "ok", "account": {…}}`, `{"result": "invalid"}` or `{"result": "disabled"}`.
//! Accounts: `nguyenvanan`, `tranthilan` (recorded her old 9-digit CMND), `levanbinh` (no
//! ID number), all with the password [`crate::people::LEGACY_PASSWORD`], and
//! [`CLOSED_ACCOUNT`], which is disabled.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::people::{people, LEGACY_PASSWORD};

/// A closed account (right password, but disabled).
pub const CLOSED_ACCOUNT: &str = "taikhoan-dong";

struct Portal {
    api_key: Option<String>,
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

async fn login(req: HttpRequest, portal: web::Data<Portal>, body: web::Bytes) -> HttpResponse {
    if let Some(key) = &portal.api_key {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| same(t, key));
        if !ok {
            return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
        }
    }
    let Ok(l) = serde_json::from_slice::<Login>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    let username = l.username.trim().to_lowercase();
    if username == CLOSED_ACCOUNT && same(&l.password, LEGACY_PASSWORD) {
        return HttpResponse::Ok().json(json!({"result": "disabled"}));
    }
    let found = people().iter().find_map(|p| {
        p.legacy
            .filter(|(u, pw, _)| *u == username && same(&l.password, pw))
            .map(|(u, _, id)| (p, u, id))
    });
    match found {
        Some((p, u, id)) => HttpResponse::Ok().json(json!({
            "result": "ok",
            "account": {
                "id": u,
                "name": p.name,
                "birthdate": p.birthdate,
                "phone_number": p.phone,
                "citizen_id": id,
            }
        })),
        None => HttpResponse::Ok().json(json!({"result": "invalid"})),
    }
}

/// Serves the simulated old portal's accounts API on `addr`.
pub fn serve(addr: &str, api_key: Option<String>) -> std::io::Result<actix_web::dev::Server> {
    let portal = web::Data::new(Portal { api_key });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(portal.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/login", web::post().to(login))
    })
    .workers(1)
    .bind(addr)?
    .run())
}
