//! One CSRF scheme for every form the broker shows (the login's steps, the logout
//! confirmation, the account page): the token is a keyed hash of the form and of a secret
//! only the citizen's browser holds (its `broker_browser` cookie, or its session cookie),
//! under a key of its own derived from the pairwise secret. Nothing is stored for it, a
//! token is good only for its form in its browser, and one check serves every handler.

use common::hash::KeyedHash;

use crate::util::ct_eq;

/// The forms a token is for.
#[derive(Debug, Clone, Copy)]
pub enum Form<'a> {
    /// The pages of login transaction `tx`.
    Login(&'a str),
    /// The confirmation of pending logout `id`.
    Logout(&'a str),
    /// The account page's forms.
    Account,
    /// The operators' console's forms.
    Console,
}

impl Form<'_> {
    fn label(self) -> String {
        match self {
            Form::Login(tx) => format!("login/{tx}"),
            Form::Logout(id) => format!("logout/{id}"),
            Form::Account => "account".to_string(),
            Form::Console => "console".to_string(),
        }
    }
}

/// The token of `form` in the browser that holds `binding`, under `key`
/// (`Settings::csrf_key`, derived from the pairwise secret with the label `csrf key`).
pub fn token(key: &KeyedHash, form: Form<'_>, binding: &str) -> String {
    key.tag(&form.label(), binding)
}

/// Whether `presented` is the token of `form` for the browser secret `binding`; never
/// without a binding (an empty one is no secret).
pub fn check(
    key: &KeyedHash,
    form: Form<'_>,
    binding: Option<&str>,
    presented: Option<&str>,
) -> bool {
    match (binding.filter(|b| !b.is_empty()), presented) {
        (Some(b), Some(p)) => ct_eq(token(key, form, b).as_bytes(), p.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key as the configuration derives it (`Settings::csrf_key`).
    fn key(pairwise_secret: &[u8]) -> KeyedHash {
        crate::config::derived_key(pairwise_secret, b"csrf key")
    }

    #[test]
    fn a_token_is_good_for_its_form_in_its_browser_only() {
        let s = &key(b"pairwise secret");
        let t = token(s, Form::Login("tx-1"), "browser-a");
        assert!(check(s, Form::Login("tx-1"), Some("browser-a"), Some(&t)));
        assert!(!check(s, Form::Login("tx-2"), Some("browser-a"), Some(&t)));
        assert!(!check(s, Form::Logout("tx-1"), Some("browser-a"), Some(&t)));
        assert!(!check(s, Form::Login("tx-1"), Some("browser-b"), Some(&t)));
        assert!(!check(s, Form::Login("tx-1"), None, Some(&t)));
        assert!(!check(
            s,
            Form::Login("tx-1"),
            Some(""),
            Some(&token(s, Form::Login("tx-1"), ""))
        ));
        assert!(!check(
            &key(b"other secret"),
            Form::Login("tx-1"),
            Some("browser-a"),
            Some(&t)
        ));
        assert!(!check(s, Form::Account, Some("browser-a"), None));
    }

    #[test]
    fn tokens_are_those_of_the_key_derived_per_call_before() {
        // Forms shown before the key was made once per configuration stay good.
        let secret = b"pairwise secret";
        let per_call = KeyedHash::new(&KeyedHash::new(secret).mac(&[b"csrf key"]));
        let mac = per_call.mac(&[b"login/tx-1", b"browser-a"]);
        let hex: String = mac.iter().take(16).map(|b| format!("{b:02x}")).collect();
        assert_eq!(token(&key(secret), Form::Login("tx-1"), "browser-a"), hex);
    }
}
