//! Checksum and plausibility validators for the values an application
//! collects: SNILS, INN, BIK, a bank account (its control key with the
//! BIK) and birth dates. Pure functions over digits and dates; reading the
//! values out of a client's words (numbers and dates said aloud) is the
//! dialog's (`dialog/fields.rs`), and phones are `dialog::values::parse_phone`.
//!
//! Hand-written: the checks are a few lines each, and no maintained crate
//! covers these Russian identifiers (the few on crates.io are unmaintained
//! single-purpose crates without the account key).

use jiff::civil::Date;

/// Why a value was refused; each has its own message to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not the right number of digits (or not digits at all).
    Length,
    /// The digits are there, the checksum is wrong.
    Checksum,
    /// A BIK of a bank outside Russia (Russian BIKs start with 04).
    NotRussian,
    /// A date in the future.
    Future,
    /// A date too far in the past to be a living person's birth date.
    TooOld,
}

/// Only the digits of `s`, if everything else is a separator a person
/// writes between digit groups (spaces, dashes, dots, slashes).
pub fn digits_of(s: &str) -> Option<String> {
    let mut d = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            d.push(c);
        } else if !matches!(c, ' ' | '-' | '.' | '/' | '\u{a0}' | '—' | '–') {
            return None;
        }
    }
    (!d.is_empty()).then_some(d)
}

fn nums(d: &str) -> Vec<u32> {
    d.bytes().map(|b| (b - b'0') as u32).collect()
}

fn weighted(d: &[u32], w: &[u32]) -> u32 {
    d.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// SNILS: 11 digits, the last two a checksum of the first nine (weights 9…1;
/// a sum below 100 is the checksum, 100 and 101 give 00, above that the
/// remainder by 101, again 00 for 100). Numbers up to 001-001-998 were
/// issued before the rule and have no checksum. Returns it as written on
/// the card: «123-456-789 01».
pub fn snils(s: &str) -> Result<String, Invalid> {
    let d = digits_of(s).ok_or(Invalid::Length)?;
    if d.len() != 11 {
        return Err(Invalid::Length);
    }
    let n = nums(&d);
    let number: u64 = d[..9].parse().unwrap_or(0);
    if number > 1_001_998 {
        let sum = weighted(&n[..9], &[9, 8, 7, 6, 5, 4, 3, 2, 1]);
        let check = match sum {
            0..=99 => sum,
            100 | 101 => 0,
            _ => match sum % 101 {
                100 => 0,
                r => r,
            },
        };
        if check != n[9] * 10 + n[10] {
            return Err(Invalid::Checksum);
        }
    }
    Ok(format!("{}-{}-{} {}", &d[..3], &d[3..6], &d[6..9], &d[9..]))
}

/// INN: 10 digits (an organisation: one check digit) or 12 (a person: two).
pub fn inn(s: &str) -> Result<String, Invalid> {
    let d = digits_of(s).ok_or(Invalid::Length)?;
    let n = nums(&d);
    let check = |k: usize, w: &[u32]| weighted(&n[..k], w) % 11 % 10 == n[k];
    let ok = match d.len() {
        10 => check(9, &[2, 4, 10, 3, 5, 9, 4, 6, 8]),
        12 => {
            check(10, &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8])
                && check(11, &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8])
        }
        _ => return Err(Invalid::Length),
    };
    if ok {
        Ok(d)
    } else {
        Err(Invalid::Checksum)
    }
}

/// A person's INN: 12 digits with both check digits.
pub fn inn_personal(s: &str) -> Result<String, Invalid> {
    match digits_of(s) {
        Some(d) if d.len() == 12 => inn(&d),
        _ => Err(Invalid::Length),
    }
}

/// BIK: 9 digits; a Russian bank's starts with 04.
pub fn bik(s: &str) -> Result<String, Invalid> {
    let d = digits_of(s).ok_or(Invalid::Length)?;
    if d.len() != 9 {
        return Err(Invalid::Length);
    }
    if !d.starts_with("04") {
        return Err(Invalid::NotRussian);
    }
    Ok(d)
}

/// A bank account number: 20 digits.
pub fn account_digits(s: &str) -> Result<String, Invalid> {
    let d = digits_of(s).ok_or(Invalid::Length)?;
    if d.len() != 20 {
        return Err(Invalid::Length);
    }
    Ok(d)
}

/// A bank account in a credit institution with its BIK: the last three
/// digits of the BIK and the 20 digits of the account, weighted 7-1-3
/// repeated, sum to a multiple of 10.
pub fn account(s: &str, bik_digits: &str) -> Result<String, Invalid> {
    let a = account_digits(s)?;
    let b = bik(bik_digits)?;
    let key = format!("{}{}", &b[6..], a);
    let w: Vec<u32> = [7, 1, 3].iter().copied().cycle().take(23).collect();
    if weighted(&nums(&key), &w).is_multiple_of(10) {
        Ok(a)
    } else {
        Err(Invalid::Checksum)
    }
}

/// A birth date: not after `today`, and at most 120 years before it.
pub fn birth_date(d: Date, today: Date) -> Result<Date, Invalid> {
    if d > today {
        return Err(Invalid::Future);
    }
    if today.year() - d.year() > 120 {
        return Err(Invalid::TooOld);
    }
    Ok(d)
}

/// A date as the forms keep and show it: «05.05.1990».
pub fn date_text(d: Date) -> String {
    format!("{:02}.{:02}.{:04}", d.day(), d.month(), d.year())
}

/// A date kept by `date_text`, read back.
pub fn parse_date_text(s: &str) -> Option<Date> {
    let mut it = s.split('.');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn snils_checksums() {
        // known valid numbers (the last two digits are the checksum)
        assert_eq!(snils("112-233-445 95").as_deref(), Ok("112-233-445 95"));
        assert_eq!(snils("11223344595").as_deref(), Ok("112-233-445 95"));
        assert_eq!(snils("087-654-303 00").as_deref(), Ok("087-654-303 00")); // 202 mod 101 = 0
        assert_eq!(snils("123-456-789 64").as_deref(), Ok("123-456-789 64"));
        // issued before the rule: any two last digits
        assert!(snils("001-001-998 77").is_ok());
        // wrong checksum, wrong length, letters
        assert_eq!(snils("112-233-445 96"), Err(Invalid::Checksum));
        assert_eq!(snils("123-456-789 65"), Err(Invalid::Checksum));
        assert_eq!(snils("001-001-999 77"), Err(Invalid::Checksum));
        assert_eq!(snils("112-233-445 9"), Err(Invalid::Length));
        assert_eq!(snils("СНИЛС"), Err(Invalid::Length));
    }

    #[test]
    fn inn_checksums() {
        // an organisation (10 digits) and persons (12 digits)
        assert_eq!(inn("7707083893").as_deref(), Ok("7707083893"));
        assert_eq!(inn("500100732259").as_deref(), Ok("500100732259"));
        assert_eq!(inn("7830002293"), Ok("7830002293".into()));
        assert_eq!(inn_personal("500100732259").as_deref(), Ok("500100732259"));
        assert_eq!(inn_personal("7707083893"), Err(Invalid::Length));
        assert_eq!(inn("7707083894"), Err(Invalid::Checksum));
        assert_eq!(inn("500100732258"), Err(Invalid::Checksum));
        assert_eq!(inn("500100732269"), Err(Invalid::Checksum));
        assert_eq!(inn("12345"), Err(Invalid::Length));
    }

    #[test]
    fn bik_and_account_keys() {
        assert_eq!(bik("044525225").as_deref(), Ok("044525225"));
        assert_eq!(bik("04 45 25 225").as_deref(), Ok("044525225"));
        assert_eq!(bik("123456789"), Err(Invalid::NotRussian));
        assert_eq!(bik("04452522"), Err(Invalid::Length));
        // known valid accounts at Sberbank's Moscow BIK
        assert_eq!(
            account("40702810400000000225", "044525225").as_deref(),
            Ok("40702810400000000225")
        );
        assert_eq!(
            account("40702810038000017240", "044525225").as_deref(),
            Ok("40702810038000017240")
        );
        assert_eq!(
            account("40817 810 8 9991 0004312", "044525225").as_deref(),
            Ok("40817810899910004312")
        );
        // one digit changed, or another bank's BIK: the key fails
        assert_eq!(
            account("40817810099910004312", "044525225"),
            Err(Invalid::Checksum)
        );
        assert_eq!(
            account("40702810038000017240", "044525974"),
            Err(Invalid::Checksum)
        );
        assert_eq!(
            account("4081781009991000431", "044525225"),
            Err(Invalid::Length)
        );
    }

    #[test]
    fn birth_dates_are_past_and_plausible() {
        let today = date(2026, 11, 26);
        assert!(birth_date(date(1990, 5, 5), today).is_ok());
        assert!(birth_date(today, today).is_ok());
        assert_eq!(birth_date(date(2027, 1, 1), today), Err(Invalid::Future));
        assert_eq!(birth_date(date(1890, 1, 1), today), Err(Invalid::TooOld));
        assert_eq!(date_text(date(1990, 5, 5)), "05.05.1990");
        assert_eq!(parse_date_text("05.05.1990"), Some(date(1990, 5, 5)));
        assert_eq!(parse_date_text("31.02.1990"), None);
    }
}
