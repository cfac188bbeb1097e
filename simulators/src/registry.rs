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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[tokio::test]
    async fn answers_the_registry_contract() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let server = serve(&format!("127.0.0.1:{port}")).expect("binds");
        let handle = server.handle();
        tokio::spawn(server);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let check = |id: &'static str, name: &'static str, birthdate: &'static str| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let v: Value = http
                    .post(format!("{base}/check"))
                    .json(&json!({"citizen_id": id, "name": name, "birthdate": birthdate}))
                    .send()
                    .await
                    .expect("check")
                    .json()
                    .await
                    .expect("json");
                v["result"].as_str().unwrap_or("").to_string()
            }
        };
        assert_eq!(
            check("079201001234", "Nguyễn Văn An", "1990-03-15").await,
            "match"
        );
        assert_eq!(
            check("079201001234", "Nguyễn Văn Ân", "1990-03-15").await,
            "mismatch"
        );
        assert_eq!(
            check("079201009999", "Nguyễn Văn An", "1990-03-15").await,
            "not_found"
        );
        let current: Value = http
            .get(format!("{base}/current/012345678"))
            .send()
            .await
            .expect("current")
            .json()
            .await
            .expect("json");
        assert_eq!(current["current"], "001195006789");
        let status = http
            .get(format!("{base}/current/001195006789"))
            .send()
            .await
            .expect("current")
            .status();
        assert_eq!(status.as_u16(), 404, "a current number was not replaced");
        handle.stop(false).await;
    }
}
