//! The end of a login: the person behind the identity, the session, consent, the code.

use actix_web::HttpResponse;
use connectors::Identity;

use super::{login_url, save_tx, see_other, LoginTx, Stage};
use crate::config::Client;
use crate::oidc::authorize::{redirect_to_client, AuthRequest};
use crate::oidc::grants::{issue_code, CodeRecord, Grant};
use crate::pages;
use crate::person;
use crate::session::{self, Session};
use crate::state::AppState;
use crate::store::StoreError;
use crate::util::{now_millis, random_token};

fn consent_key(person_id: &str, client_id: &str) -> String {
    format!("consent:{person_id}:{client_id}")
}

/// Whether the citizen must be asked before this client gets a login.
pub async fn consent_needed(
    state: &AppState,
    client: &Client,
    request: &AuthRequest,
    person_id: &str,
) -> Result<bool, StoreError> {
    if request.prompts("consent") {
        return Ok(true);
    }
    if !client.require_consent {
        return Ok(false);
    }
    let given = state
        .store
        .get(&consent_key(person_id, &client.id), now_millis())
        .await?;
    let granted: Vec<String> = given
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok(!request.scopes.iter().all(|s| granted.contains(s)))
}

/// Records consent to the request's scopes.
pub async fn record_consent(
    state: &AppState,
    client: &Client,
    request: &AuthRequest,
    person_id: &str,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(&request.scopes).unwrap_or_default();
    state
        .store
        .put(
            &consent_key(person_id, &client.id),
            &bytes,
            None,
            now_millis(),
        )
        .await
}

/// Issues a code for the session and redirects to the client.
pub async fn issue_code_response(
    state: &AppState,
    client: &Client,
    request: &AuthRequest,
    session_secret: &str,
    mut session: Session,
) -> HttpResponse {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let result = async {
        let person = person::load(store, &session.person_id).await?;
        let claims = person
            .as_ref()
            .map(|p| person::released_claims(p, &request.scopes))
            .unwrap_or_default();
        if !session.clients.contains(&client.id) {
            session.clients.push(client.id.clone());
        }
        let grant = Grant {
            client_id: client.id.clone(),
            sub: person::subject(settings, client, &session.person_id),
            person_id: session.person_id.clone(),
            scopes: request.scopes.clone(),
            claims,
            auth_time: session.auth_time,
            acr: settings.acr_of(session.level).to_string(),
            amr: session.amr.clone(),
            sid: session.sid.clone(),
        };
        session::save(settings, store, Some(session_secret.to_string()), session).await?;
        let record = CodeRecord {
            grant,
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
        };
        issue_code(settings, store, &record).await
    }
    .await;
    match result {
        Ok(code) => {
            tracing::info!(client = %client.id, "authorization code issued");
            redirect_to_client(
                settings,
                &request.redirect_uri,
                request.state.as_deref(),
                &[("code", &code)],
            )
        }
        Err(e) => pages::unavailable_page(&request.lang, &e),
    }
}

/// A connector finished: resolve the person, open or raise the session, then consent or
/// code.
pub async fn authenticated(
    state: &AppState,
    tx: LoginTx,
    connector_id: &str,
    identity: Identity,
    current: Option<(String, Session)>,
) -> HttpResponse {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let lang = tx.request.lang.clone();
    let Some(client) = settings.clients.get(&tx.request.client_id) else {
        return pages::error_page(
            &lang,
            400,
            "error-unknown-client",
            "client no longer configured",
        );
    };
    if identity.assurance < tx.request.min_level {
        return pages::error_page(
            &lang,
            403,
            "error-assurance-too-low",
            "the identity source did not reach the requested level",
        );
    }
    let person = match person::resolve(settings, store, connector_id, &identity).await {
        Ok(p) => p,
        Err(e) => return pages::unavailable_page(&lang, &e),
    };
    let now = now_millis();
    // The same person keeps their session (and `sid`); anyone else gets a new one.
    let (secret, session) = match current {
        Some((secret, mut s)) if s.person_id == person.id => {
            if identity.assurance > s.level {
                tracing::info!(target: "audit", event = "login.step_up", sid = %s.sid, from = %s.level, to = %identity.assurance, connector = connector_id, "session stepped up");
            }
            s.auth_time = now / 1000;
            s.level = identity.assurance;
            s.amr = identity.amr.clone();
            s.connector = connector_id.to_string();
            s.display_name = person.display_name();
            (Some(secret), s)
        }
        _ => (
            None,
            Session {
                sid: random_token(16),
                person_id: person.id.clone(),
                display_name: person.display_name(),
                auth_time: now / 1000,
                level: identity.assurance,
                amr: identity.amr.clone(),
                connector: connector_id.to_string(),
                created: now,
                last_seen: now,
                clients: Vec::new(),
            },
        ),
    };
    metrics::counter!("broker_logins_total", "connector" => connector_id.to_string(), "outcome" => "success").increment(1);
    tracing::info!(
        target: "audit",
        event = "login.succeeded",
        connector = connector_id,
        client = %client.id,
        level = %identity.assurance,
        person = %person.id,
        sid = %session.sid,
        "citizen authenticated"
    );
    let secret = match session::save(settings, store, secret, session.clone()).await {
        Ok(s) => s,
        Err(e) => return pages::unavailable_page(&lang, &e),
    };
    let cookie = session::secure_cookie(settings, session::cookie_name(settings), secret.clone());

    let consent = match consent_needed(state, client, &tx.request, &person.id).await {
        Ok(c) => c,
        Err(e) => return pages::unavailable_page(&lang, &e),
    };
    let mut resp = if consent {
        let mut tx = tx;
        tx.stage = Stage::Consent;
        if let Err(e) = save_tx(state, &tx).await {
            return pages::unavailable_page(&lang, &e);
        }
        see_other(&login_url(state, &tx.id))
    } else {
        if let Err(e) = store.delete(&super::tx_key(&tx.id), now).await {
            return pages::unavailable_page(&lang, &e);
        }
        issue_code_response(state, client, &tx.request, &secret, session).await
    };
    let _ = resp.add_cookie(&cookie);
    resp
}
