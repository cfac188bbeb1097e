//! The made-up test citizens every simulator shares: the same people as the demo's test
//! citizens (`config/demo.toml`) and the simulated VNeID, so one person reaches the broker
//! through every source with the same citizen ID number.

/// Kind of a bank card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    /// A debit card: can be used for verification.
    Debit,
    /// A credit card: refused (the banks verify debit cards only).
    Credit,
}

/// A bank card held by a test citizen.
#[derive(Debug, Clone)]
pub struct Card {
    /// Bank id (as in the demo configuration).
    pub bank: &'static str,
    /// Card number (Luhn-valid, made up).
    pub number: &'static str,
    /// Debit or credit.
    pub kind: CardKind,
    /// Whether the card is active (a frozen or cancelled card is not).
    pub active: bool,
    /// The phone number the bank has on record for it (E.164).
    pub reserved_phone: &'static str,
}

/// A test citizen.
#[derive(Debug, Clone)]
pub struct Person {
    /// Short name used on simulator pages and in the demo (`an`, `lan`, ...).
    pub key: &'static str,
    /// Full name as the registry and the banks have it.
    pub name: &'static str,
    /// Current citizen ID number (12-digit CCCD, or 18-digit PRC resident ID).
    pub citizen_id: &'static str,
    /// An old ID number that became `citizen_id` (9-digit CMND), if any.
    pub old_id: Option<&'static str>,
    /// Birth date, `YYYY-MM-DD`.
    pub birthdate: &'static str,
    /// The citizen's phone today (E.164).
    pub phone: &'static str,
    /// Bank cards.
    pub cards: &'static [Card],
    /// Account at the old portal: (username, password, ID number recorded on the account).
    pub legacy: Option<(&'static str, &'static str, Option<&'static str>)>,
}

/// The password of every old-portal account.
pub const LEGACY_PASSWORD: &str = "matkhau-cu";

/// Every test citizen.
pub fn people() -> &'static [Person] {
    &PEOPLE
}

/// The citizen with this key.
pub fn person(key: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.key == key)
}

static PEOPLE: [Person; 4] = [
    Person {
        key: "an",
        name: "Nguyễn Văn An",
        citizen_id: "079201001234",
        old_id: None,
        birthdate: "1990-03-15",
        phone: "+84901234567",
        cards: &[Card {
            bank: "ccb",
            number: "6217000010012345677",
            kind: CardKind::Debit,
            active: true,
            reserved_phone: "+84901234567",
        }],
        legacy: Some(("nguyenvanan", LEGACY_PASSWORD, Some("079201001234"))),
    },
    Person {
        key: "lan",
        name: "Trần Thị Lan",
        citizen_id: "001195006789",
        old_id: Some("012345678"),
        birthdate: "1995-11-02",
        phone: "+84912345678",
        cards: &[
            Card {
                bank: "boc",
                number: "6216610002003456781",
                kind: CardKind::Debit,
                active: true,
                reserved_phone: "+84912345678",
            },
            Card {
                bank: "cmb",
                number: "6214830077008901238",
                kind: CardKind::Debit,
                active: true,
                reserved_phone: "+84912345678",
            },
        ],
        // The old account recorded her 9-digit CMND; the registry maps it to her CCCD.
        legacy: Some(("tranthilan", LEGACY_PASSWORD, Some("012345678"))),
    },
    Person {
        key: "wei",
        name: "王伟",
        citizen_id: "110101199003074517",
        old_id: None,
        birthdate: "1990-03-07",
        phone: "+8613800138000",
        cards: &[
            Card {
                bank: "icbc",
                number: "6222020200112345679",
                kind: CardKind::Debit,
                active: true,
                reserved_phone: "+8613800138000",
            },
            // Minsheng Bank is still being upgraded: the broker never asks it.
            Card {
                bank: "cmbc",
                number: "6226220044005678906",
                kind: CardKind::Debit,
                active: true,
                reserved_phone: "+8613800138000",
            },
            Card {
                bank: "cmb",
                number: "4392250055006789018",
                kind: CardKind::Credit,
                active: true,
                reserved_phone: "+8613800138000",
            },
            Card {
                bank: "psbc",
                number: "6217990066007890129",
                kind: CardKind::Debit,
                active: false,
                reserved_phone: "+8613800138000",
            },
        ],
        legacy: None,
    },
    Person {
        key: "binh",
        name: "Lê Văn Bình",
        citizen_id: "036089004321",
        old_id: Some("225123456"),
        birthdate: "1989-07-20",
        phone: "+84987654321",
        // He changed his phone but not at the bank: the four elements do not match.
        cards: &[Card {
            bank: "abc",
            number: "6228480033004567898",
            kind: CardKind::Debit,
            active: true,
            reserved_phone: "+84987000000",
        }],
        // An old account without any ID number (the case of the Vietnamese portal).
        legacy: Some(("levanbinh", LEGACY_PASSWORD, None)),
    },
];

/// Lower-case, NFC-insensitive comparison is not needed: names are compared after
/// trimming and collapsing spaces, as banks do.
pub fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(a) == norm(b)
}

/// Digits of a phone number (so `+84 90…` and `8490…` compare equal).
pub fn phone_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luhn(n: &str) -> bool {
        let mut sum = 0;
        for (i, c) in n.chars().rev().enumerate() {
            let mut d = c.to_digit(10).unwrap_or(99);
            if i % 2 == 1 {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
        }
        sum % 10 == 0
    }

    #[test]
    fn cards_are_luhn_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in people() {
            for c in p.cards {
                assert!(luhn(c.number), "{}", c.number);
                assert!(seen.insert(c.number));
            }
        }
    }

    #[test]
    fn same_people_as_the_vneid_simulator() {
        for v in crate::vneid::citizens() {
            let p = person(v.username).expect("every VNeID citizen is here");
            assert_eq!(p.citizen_id, v.cccd);
            assert_eq!(p.name, v.name);
        }
    }
}
