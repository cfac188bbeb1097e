//! The operators' console at `/console`: a relying party of the broker itself (its sign-in
//! must reach `[console] min_assurance`, `high` by default), for operators named in the
//! configuration file with a role. Server-rendered, every action a plain form (CSRF-bound
//! to the session), every action an audit row with the operator's name.
//!
//! * [`auth`]: who the operator is (session, assurance, role);
//! * [`views`]: the pages;
//! * [`actions`]: what the forms do.

pub mod actions;
pub mod auth;
pub mod views;

use actix_web::web;

/// Registers the console's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(views::overview))
        .route("/console/signin", web::get().to(auth::sign_in))
        .route("/console/callback", web::get().to(auth::callback))
        .route("/console/config", web::get().to(views::config))
        .route("/console/config/check", web::post().to(actions::check))
        .route("/console/config/apply", web::post().to(actions::apply))
        .route(
            "/console/clients/register",
            web::post().to(actions::register_client),
        )
        .route("/console/history", web::get().to(views::history))
        .route(
            "/console/history/{version}/rollback",
            web::post().to(actions::rollback),
        )
        .route("/console/maintenance", web::get().to(views::maintenance))
        .route("/console/maintenance", web::post().to(actions::maintenance))
        .route("/console/reviews", web::get().to(views::reviews))
        .route("/console/reviews/lookup", web::post().to(actions::lookup))
        .route(
            "/console/reviews/{id}/close",
            web::post().to(actions::close_review),
        )
        .route("/console/audit", web::get().to(views::audit));
}
