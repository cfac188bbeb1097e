//! The end of a login: the person behind the identity, the session, consent, the code.

use connectors::Identity;

use super::{show_stage, Answer, Env, Failure, LoginTx, Outcome, PendingClaim, Stage};
use crate::config::Client;
use crate::oidc::authorize::AuthRequest;
use crate::oidc::grants::{issue_code, CodeRecord, Grant};
use crate::person::{self, resolve::Claim, Resolution};
use crate::protocol::Prompt;
use crate::session::{self, Session};
use crate::util::random_token;
use store::StoreError;

/// The session's person, read from the records at most once per request: the steps that
/// end a login (the ID link, the code's claims) share one read, and the login that just
/// resolved the person hands it on instead of reading it again.
#[derive(Default)]
pub struct SessionPerson(Option<(String, Option<person::Person>)>);

impl SessionPerson {
    /// A person the caller has just read or written at its current version.
    pub fn known(person: person::Person) -> Self {
        Self(Some((person.id.clone(), Some(person))))
    }

    /// The person `id` (the session's), read now unless known already.
    pub async fn get(
        &mut self,
        state: &Env,
        id: &str,
    ) -> Result<Option<&person::Person>, StoreError> {
        if self.0.as_ref().is_none_or(|(known, _)| known != id) {
            let settings = state.settings();
            let read = person::load(&settings, state.records.as_ref(), id).await?;
            self.0 = Some((id.to_string(), read));
        }
        Ok(self.0.as_ref().and_then(|(_, p)| p.as_ref()))
    }
}

/// Whether the citizen must be asked before this client gets a login.
pub async fn consent_needed(
    state: &Env,
    client: &Client,
    request: &AuthRequest,
    person_id: &str,
) -> Result<bool, StoreError> {
    if request.prompts(Prompt::Consent) {
        return Ok(true);
    }
    if !client.require_consent {
        return Ok(false);
    }
    let granted = state
        .records
        .consent(person_id, &client.id)
        .await?
        .unwrap_or_default();
    Ok(!request.scopes.iter().all(|s| granted.contains(s)))
}

/// Records consent to the request's scopes.
pub async fn record_consent(
    state: &Env,
    client: &Client,
    request: &AuthRequest,
    person_id: &str,
) -> Result<(), StoreError> {
    Ok(state
        .records
        .put_consent(person_id, &client.id, &request.scopes, state.now)
        .await?)
}

/// Issues a code for the session and redirects to the client.
pub async fn issue_code_response(
    state: &Env,
    client: &Client,
    request: &AuthRequest,
    session_secret: &str,
    mut session: Session,
    mut known: SessionPerson,
) -> Outcome {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let signed_in = (session.person_id.clone(), session.connector.clone());
    let result = async {
        let claims = known
            .get(state, &session.person_id)
            .await?
            .map(|p| person::released_claims(p, &request.scopes))
            .unwrap_or_default();
        if !session.clients.contains(&client.id) {
            session.clients.push(client.id.clone());
        }
        let grant = Grant {
            client_id: client.id.as_str().into(),
            sub: person::subject(settings, client, &session.person_id),
            person_id: session.person_id.clone(),
            scopes: request.scopes.clone(),
            claims,
            auth_time: session.auth_time,
            acr: settings.acr_of(session.level).to_string(),
            amr: session.amr.clone(),
            sid: session.sid.clone(),
        };
        session::save(
            settings,
            store,
            Some(session_secret.to_string()),
            session,
            state.now,
        )
        .await?;
        let record = CodeRecord {
            grant,
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            dpop_jkt: request.dpop_jkt.clone(),
        };
        issue_code(settings, store, &record, state.now).await
    }
    .await;
    match result {
        Ok(code) => {
            tracing::info!(client = %client.id, "authorization code issued");
            person::activity::record(
                state.records.as_ref(),
                &signed_in.0,
                &client.id,
                &signed_in.1,
                state.now,
            )
            .await;
            match crate::oidc::authorize::authorization_response(
                settings,
                request,
                &[("code", &code)],
                state.now,
            ) {
                Some(delivery) => Ok(Answer::deliver(delivery)),
                None => Err(Failure::page(
                    &request.lang,
                    400,
                    "error-bad-redirect",
                    "redirect_uri is not a URL",
                )),
            }
        }
        Err(e) => Err(Failure::unavailable(&request.lang, &e)),
    }
}

/// A connector finished: resolve the person (asking about an older account when the
/// binding rules need it), open or raise the session, then go on as [`proceed`] does (the
/// session is saved by what comes next, once).
pub async fn authenticated(
    state: &Env,
    mut tx: LoginTx,
    connector_id: &str,
    identity: Identity,
    current: Option<(String, Session)>,
    decision: Claim,
) -> Outcome {
    let settings = &state.settings();
    let records = state.records.as_ref();
    let lang = tx.request.lang.clone();
    let Some(client) = settings.clients.get(tx.request.client_id.as_str()) else {
        return Err(Failure::page(
            &lang,
            400,
            "error-unknown-client",
            "client no longer configured",
        ));
    };

    // Proving an older account during a claim: that login must lead to the weak binding's
    // person; then the strong identity joins it.
    let (connector_id, identity, claim) = match tx.pending.take() {
        Some(pending) => {
            let proved = match person::resolve(
                settings,
                records,
                connector_id,
                &identity,
                Claim::Ask,
                state.now,
            )
            .await
            {
                Ok(Resolution::Found { person, .. }) => person.id == pending.weak.person,
                Ok(Resolution::Claim { .. }) => false,
                Err(e) => return Err(Failure::unavailable(&lang, &e)),
            };
            if !proved {
                tracing::warn!(target: "audit", event = "claim.failed", connector = connector_id, "the account signed in to is not the one linked to the number");
                tx.pending = Some(pending);
                tx.stage = Stage::Claim;
                tx.notice = Some("claim-wrong-account".into());
                return show_stage(state, &tx).await;
            }
            tracing::info!(target: "audit", event = "claim.merged", connector = %pending.connector, "a stronger proof joined the older account the citizen proved to hold");
            let merge = Claim::Merge(pending.weak.person.clone());
            (pending.connector, pending.identity, merge)
        }
        None => (connector_id.to_string(), identity, decision),
    };
    let connector_id = connector_id.as_str();
    if identity.assurance < tx.request.min_level {
        return Err(Failure::page(
            &lang,
            403,
            "error-assurance-too-low",
            "the identity source did not reach the requested level",
        ));
    }
    let person =
        match person::resolve(settings, records, connector_id, &identity, claim, state.now).await {
            Ok(Resolution::Found {
                person,
                suspended_other,
            }) => {
                if suspended_other {
                    tx.notice = Some("notice-binding-suspended".into());
                }
                person
            }
            Ok(Resolution::Claim { weak }) => {
                tx.pending = Some(PendingClaim {
                    connector: connector_id.to_string(),
                    identity,
                    weak,
                });
                tx.stage = Stage::Claim;
                return show_stage(state, &tx).await;
            }
            Err(e) => return Err(Failure::unavailable(&lang, &e)),
        };
    let now = state.now;
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
                sid: random_token(16).into(),
                person_id: person.id.as_str().into(),
                display_name: person.display_name(),
                auth_time: now / 1000,
                level: identity.assurance,
                amr: identity.amr.clone(),
                connector: connector_id.to_string(),
                created: now,
                last_seen: now,
                clients: Vec::new(),
                link_skipped: false,
            },
        ),
    };
    metrics::counter!("broker_logins_total", "connector" => connector_id.to_string(), "outcome" => "success").increment(1);
    crate::recent_logins::record(connector_id, "success", state.now);
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
    // Written once, by whatever comes next: the code's response (which adds the client to
    // it) or the stage shown before it.
    let pending = if secret.is_some() {
        Pending::Raised
    } else {
        Pending::New
    };
    let secret = secret.unwrap_or_else(|| random_token(32));
    let known = SessionPerson::known(person);
    let mut answer = proceed_with(state, tx, &secret, session, known, pending).await?;
    answer.session_cookie = Some(secret);
    answer.last_source = Some(connector_id.to_string());
    Ok(answer)
}

/// After authentication: a notice, the citizen ID link, consent, then the code — each step
/// shown only when needed. `session` is saved already.
pub async fn proceed(
    state: &Env,
    tx: LoginTx,
    secret: &str,
    session: Session,
    known: SessionPerson,
) -> Outcome {
    proceed_with(state, tx, secret, session, known, Pending::Saved).await
}

/// Whether the session [`proceed_with`] goes on with is in the store yet. One not saved
/// yet is saved with the code (one write), or before whatever page comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Saved already.
    Saved,
    /// Not saved yet: the session of the browser's cookie, raised by this login.
    Raised,
    /// Not saved yet: a new session, whose cookie the browser gets only with the answer.
    New,
}

async fn proceed_with(
    state: &Env,
    mut tx: LoginTx,
    secret: &str,
    session: Session,
    mut known: SessionPerson,
    pending: Pending,
) -> Outcome {
    let settings = state.settings();
    let store = state.store.as_ref();
    let lang = tx.request.lang.clone();
    let save = |session: &Session| {
        session::save(
            &settings,
            store,
            Some(secret.to_string()),
            session.clone(),
            state.now,
        )
    };
    let Some(client) = settings.clients.get(tx.request.client_id.as_str()) else {
        keep_signed_in(pending, save(&session)).await;
        return Err(Failure::page(
            &lang,
            400,
            "error-unknown-client",
            "client no longer configured",
        ));
    };
    let next = async {
        if let Some(key) = tx.notice.take() {
            return Ok(Some(Stage::Notice { key }));
        }
        if link_needed(state, client, &session, tx.link_skipped, &mut known).await? {
            let person = known.get(state, &session.person_id).await?;
            let claim = |k: &str| {
                person
                    .and_then(|p| p.claims.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            // The link step counts registry checks of its own, not the source's wrong answers.
            tx.attempts = 0;
            return Ok(Some(Stage::Link {
                problem: None,
                name: super::seal_value(&settings, &tx.id, "name", &claim("name")),
                birthdate: super::seal_value(&settings, &tx.id, "birthdate", &claim("birthdate")),
                exhausted: false,
            }));
        }
        if consent_needed(state, client, &tx.request, &session.person_id).await? {
            return Ok(Some(Stage::Consent));
        }
        Ok::<_, StoreError>(None)
    }
    .await;
    match next {
        Ok(Some(stage)) => {
            if pending != Pending::Saved {
                if let Err(e) = save(&session).await {
                    return Err(Failure::unavailable(&lang, &e));
                }
            }
            tx.stage = stage;
            show_stage(state, &tx).await
        }
        Ok(None) => {
            if let Err(e) = store
                .delete(&crate::keyspace::login_tx(&tx.id), state.now)
                .await
            {
                keep_signed_in(pending, save(&session)).await;
                return Err(Failure::unavailable(&lang, &e));
            }
            let kept = (pending == Pending::Raised).then(|| session.clone());
            let answer =
                issue_code_response(state, client, &tx.request, secret, session, known).await;
            if let (Err(_), Some(session)) = (&answer, kept) {
                keep_signed_in(pending, save(&session)).await;
            }
            answer
        }
        Err(e) => {
            keep_signed_in(pending, save(&session)).await;
            Err(Failure::unavailable(&lang, &e))
        }
    }
}

/// On a failure after authentication, saves the raised session of the browser's cookie if
/// the store still can (the records may be what failed): the citizen keeps it for their
/// retry. A new session is not saved: a failure's answer sets no cookie, so nobody could
/// use it.
async fn keep_signed_in(
    pending: Pending,
    save: impl std::future::Future<Output = Result<String, StoreError>>,
) {
    if pending == Pending::Raised {
        if let Err(e) = save.await {
            tracing::warn!(error = %e, "the session could not be saved after a failure either");
        }
    }
}

/// Whether the citizen must be asked for a citizen ID number: the person has none, a
/// registry can check one, and the platform requires it or the citizen has not skipped.
pub async fn link_needed(
    state: &Env,
    client: &Client,
    session: &Session,
    skipped_now: bool,
    known: &mut SessionPerson,
) -> Result<bool, StoreError> {
    let settings = state.settings();
    if settings.registry.is_none() && !client.require_citizen_id {
        return Ok(false);
    }
    if !client.require_citizen_id && (skipped_now || session.link_skipped) {
        return Ok(false);
    }
    let person = known.get(state, &session.person_id).await?;
    Ok(person.and_then(|p| p.citizen_id()).is_none())
}
