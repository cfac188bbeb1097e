//! The header and claims of a DPoP proof, parsed in place: each member the checks read is a
//! field (its text borrowed from the decoded JSON), every other member is skipped. A proof
//! is parsed on every DPoP request; reading it into `serde_json`'s maps cost about forty
//! allocations a grant, this a handful. The checks themselves are in [`super::dpop`].
//!
//! A member of the wrong type is kept as [`Member::Other`], not an error, so each check
//! refuses it with its own reason (as `"typ": 1` gets "typ must be dpop+jwt"). A member the
//! checks read, given twice, makes the proof malformed (RFC 7515 4: refused rather than the
//! last kept). Members skipped are checked for JSON syntax and UTF-8 only (not for lone
//! surrogate escapes or number range): the signature covers them and nothing reads them.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `json` read as `T` if it is a JSON object in UTF-8 (serde's derived structs would take
/// an array too, its elements as the members in order; and skipped strings are not checked
/// for UTF-8 by serde_json, so the whole text is here).
pub fn object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Option<T> {
    let text = std::str::from_utf8(json).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// One member of a JSON object, as the checks need it.
#[derive(Debug, Default, PartialEq)]
pub enum Member<'a> {
    /// Not in the object.
    #[default]
    Absent,
    /// A string.
    Text(Cow<'a, str>),
    /// A non-negative integer.
    Integer(u64),
    /// Any other number.
    Float(f64),
    /// `null`, a boolean, an array or an object.
    Other,
}

impl Member<'_> {
    /// The member's text, when it is a string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Member::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the object has the member at all (whatever its value, `null` included).
    pub fn present(&self) -> bool {
        !matches!(self, Member::Absent)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Member<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor::<Member<'de>>(PhantomData))
    }
}

/// What a member becomes, from a value that is not an object or from an object.
trait FromJson<'de>: Sized {
    fn from_value(value: Member<'de>) -> Self;
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de> FromJson<'de> for Member<'de> {
    fn from_value(value: Member<'de>) -> Self {
        value
    }
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Member::Other)
    }
}

/// Reads any JSON value as a [`Member`], or an object as `T` wants it.
struct JsonVisitor<T>(PhantomData<T>);

impl<'de, T: FromJson<'de>> Visitor<'de> for JsonVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<T, E> {
        Ok(T::from_value(Member::Text(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::from_value(Member::Text(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E>(self, v: String) -> Result<T, E> {
        Ok(T::from_value(Member::Text(Cow::Owned(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::from_value(Member::Integer(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        let member = u64::try_from(v).map_or(Member::Float(v as f64), Member::Integer);
        Ok(T::from_value(member))
    }
    fn visit_f64<E>(self, v: f64) -> Result<T, E> {
        Ok(T::from_value(Member::Float(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::from_value(Member::Other))
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::from_value(Member::Other))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::from_value(Member::Other))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_object(map)
    }
}

/// The `jwk` of a proof's header: the public members, and whether any member only a private
/// or symmetric key has is there (RFC 7518 6.2.2, 6.3.2, 6.4; RFC 8037 2).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ProofJwk<'a> {
    #[serde(default, borrow)]
    pub kty: Member<'a>,
    #[serde(default, borrow)]
    pub crv: Member<'a>,
    #[serde(default, borrow)]
    pub x: Member<'a>,
    #[serde(default, borrow)]
    pub y: Member<'a>,
    #[serde(default, borrow)]
    pub n: Member<'a>,
    #[serde(default, borrow)]
    pub e: Member<'a>,
    #[serde(default, borrow)]
    d: Member<'a>,
    #[serde(default, borrow)]
    p: Member<'a>,
    #[serde(default, borrow)]
    q: Member<'a>,
    #[serde(default, borrow)]
    dp: Member<'a>,
    #[serde(default, borrow)]
    dq: Member<'a>,
    #[serde(default, borrow)]
    qi: Member<'a>,
    #[serde(default, borrow)]
    oth: Member<'a>,
    #[serde(default, borrow)]
    k: Member<'a>,
}

impl ProofJwk<'_> {
    /// The first private or symmetric member present, if any.
    pub fn private_member(&self) -> Option<&'static str> {
        [
            ("d", &self.d),
            ("p", &self.p),
            ("q", &self.q),
            ("dp", &self.dp),
            ("dq", &self.dq),
            ("qi", &self.qi),
            ("oth", &self.oth),
            ("k", &self.k),
        ]
        .into_iter()
        .find(|(_, m)| m.present())
        .map(|(name, _)| name)
    }
}

/// The header's `jwk`: an object, or something else (refused as no key).
#[derive(Debug, Default)]
pub enum JwkMember<'a> {
    /// Not in the header, or not an object.
    #[default]
    Missing,
    /// An object.
    Key(Box<ProofJwk<'a>>),
}

impl<'de> FromJson<'de> for JwkMember<'de> {
    fn from_value(_: Member<'de>) -> Self {
        JwkMember::Missing
    }
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let key = ProofJwk::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(JwkMember::Key(Box::new(key)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JwkMember<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor::<JwkMember<'de>>(PhantomData))
    }
}

/// A proof's protected header.
#[derive(Debug, serde::Deserialize)]
pub struct ProofHeader<'a> {
    #[serde(default, borrow)]
    pub typ: Member<'a>,
    #[serde(default, borrow)]
    pub alg: Member<'a>,
    #[serde(default, borrow)]
    pub jwk: JwkMember<'a>,
    /// RFC 7515 4.1.11: critical extensions are not understood here, so any is refused.
    #[serde(default, borrow)]
    pub crit: Member<'a>,
}

/// A proof's claims (RFC 9449 4.2).
#[derive(Debug, serde::Deserialize)]
pub struct ProofClaims<'a> {
    #[serde(default, borrow)]
    pub jti: Member<'a>,
    #[serde(default, borrow)]
    pub htm: Member<'a>,
    #[serde(default, borrow)]
    pub htu: Member<'a>,
    #[serde(default, borrow)]
    pub iat: Member<'a>,
    #[serde(default, borrow)]
    pub ath: Member<'a>,
    #[serde(default, borrow)]
    pub nonce: Member<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_borrowed_typed_or_other_and_duplicates_are_refused() {
        let header: ProofHeader<'_> = serde_json::from_str(
            r#"{"typ":"dpop+jwt","alg":"ES256","extra":[1,{"a":2}],"crit":null,
                "jwk":{"kty":"EC","crv":"P-256","x":"eA","y":"eQ","d":null,"unknown":{}}}"#,
        )
        .expect("parses");
        assert!(matches!(
            header.typ,
            Member::Text(Cow::Borrowed("dpop+jwt"))
        ));
        assert_eq!(header.alg.text(), Some("ES256"));
        assert!(header.crit.present(), "null counts as present");
        let JwkMember::Key(jwk) = header.jwk else {
            panic!("an object")
        };
        assert_eq!((jwk.x.text(), jwk.y.text()), (Some("eA"), Some("eQ")));
        assert_eq!(jwk.private_member(), Some("d"));

        let claims: ProofClaims<'_> =
            serde_json::from_str(r#"{"jti":"a\"b","iat":1.5,"nonce":7,"htm":true}"#)
                .expect("parses");
        assert_eq!(
            claims.jti.text(),
            Some("a\"b"),
            "an escaped string is unescaped"
        );
        assert_eq!(claims.iat, Member::Float(1.5));
        assert_eq!(claims.nonce, Member::Integer(7));
        assert_eq!(claims.htm, Member::Other);
        assert_eq!(claims.htu, Member::Absent);

        let no_key: ProofHeader<'_> = serde_json::from_str(r#"{"jwk":"text"}"#).expect("parses");
        assert!(matches!(no_key.jwk, JwkMember::Missing));
        assert!(object::<ProofClaims<'_>>(br#"{"jti":"a","jti":"b"}"#).is_none());
        assert!(
            object::<ProofClaims<'_>>(br#"["a", "POST"]"#).is_none(),
            "an array"
        );
        assert!(object::<ProofClaims<'_>>(b" {} ").is_some());
        assert!(
            object::<ProofClaims<'_>>(b"{\"skipped\":\"\xff\"}").is_none(),
            "invalid UTF-8 in a member nobody reads"
        );
    }
}
