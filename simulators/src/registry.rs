//! The simulated population registry, speaking the broker's registry contract (README):
//! `POST /check` with `{"citizen_id", "name", "birthdate"}` answers `{"result": "match" |
//! "mismatch" | "not_found"}`; `GET /current/{citizen_id}` answers `{"current": "…"}` for
//! an old number that was replaced (Lan's and Bình's 9-digit CMND), 404 otherwise.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;

use crate::people::{people, same_name};

#[derive(Deserialize)]
struct Check {
    citizen_id: String,
    name: String,
    birthdate: String,
}

async fn check(body: web::Json<Check>) -> HttpResponse {
    let id = body.citizen_id.trim().to_uppercase();
    let person = people()
        .iter()
        .find(|p| p.citizen_id == id || p.old_id == Some(id.as_str()));
    let result = match person {
        None => "not_found",
        Some(p) if same_name(p.name, &body.name) && p.birthdate == body.birthdate.trim() => "match",
        Some(_) => "mismatch",
    };
    HttpResponse::Ok().json(json!({ "result": result }))
}

async fn current(path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner().trim().to_uppercase();
    match people().iter().find(|p| p.old_id == Some(id.as_str())) {
        Some(p) => HttpResponse::Ok().json(json!({ "current": p.citizen_id })),
        None => HttpResponse::NotFound().json(json!({"error": "not_replaced"})),
    }
}

/// Serves the simulated population registry on `addr`.
pub fn serve(addr: &str) -> std::io::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/check", web::post().to(check))
            .route("/current/{citizen_id}", web::get().to(current))
    })
    .workers(1)
    .bind(addr)?
    .run())
}
