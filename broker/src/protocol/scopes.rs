//! The scopes the broker knows and the claims each releases (OIDC Core 5.4, plus
//! `citizen_id`).

/// Scopes the broker knows, with the claims each releases.
pub const SCOPES: &[(&str, &[&str])] = &[
    ("openid", &[]),
    ("offline_access", &[]),
    (
        "profile",
        &[
            "name",
            "given_name",
            "family_name",
            "middle_name",
            "birthdate",
            "gender",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("phone", &["phone_number", "phone_number_verified"]),
    ("address", &["address"]),
    ("citizen_id", &["citizen_id"]),
];
