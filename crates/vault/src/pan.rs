//! Card numbers (PANs): parsed once at the edge of the vault, never printed.

use std::fmt;

/// A card number that passed the checks: 12 to 19 digits, Luhn-valid, a known brand.
/// `Debug` and `Display` show only the BIN and last four.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Jcb,
    UnionPay,
    Diners,
}

impl Brand {
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::Discover => "discover",
            Brand::Jcb => "jcb",
            Brand::UnionPay => "unionpay",
            Brand::Diners => "diners",
        }
    }
}

/// Why a number was refused. The messages never repeat the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    #[error("card number must contain only digits (spaces and dashes are allowed)")]
    NotDigits,
    #[error("card number must be 12 to 19 digits")]
    Length,
    #[error("card number fails the Luhn check")]
    Luhn,
    #[error("card number is not of a supported brand")]
    UnknownBrand,
}

impl Pan {
    pub fn parse(raw: &str) -> Result<Pan, PanError> {
        let mut digits = String::with_capacity(19);
        for c in raw.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(PanError::NotDigits),
            }
            if digits.len() > 19 {
                return Err(PanError::Length);
            }
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(PanError::Length);
        }
        if !rampart_edge::luhn(digits.as_bytes()) {
            return Err(PanError::Luhn);
        }
        brand_of(&digits).ok_or(PanError::UnknownBrand)?;
        Ok(Pan(digits))
    }

    /// The digits. The one way to reach them; grep for it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn bin(&self) -> &str {
        &self.0[..6]
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    pub fn brand(&self) -> Brand {
        // Checked in `parse`.
        brand_of(&self.0).unwrap_or(Brand::Visa)
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({}…{})", self.bin(), self.last4())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…{}", self.bin(), self.last4())
    }
}

/// The brand from the leading digits (IIN ranges as the networks publish them).
fn brand_of(digits: &str) -> Option<Brand> {
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    let len = digits.len();
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    Some(if digits.starts_with('4') && matches!(len, 13 | 16 | 19) {
        Brand::Visa
    } else if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        Brand::Mastercard
    } else if (p2 == 34 || p2 == 37) && len == 15 {
        Brand::Amex
    } else if (p4 == 6011
        || p2 == 65
        || (644..=649).contains(&p3)
        || (622_126..=622_925).contains(&p6))
        && (16..=19).contains(&len)
    {
        Brand::Discover
    } else if (3528..=3589).contains(&p4) && (16..=19).contains(&len) {
        Brand::Jcb
    } else if p2 == 62 && (16..=19).contains(&len) {
        Brand::UnionPay
    } else if (p2 == 36 || (300..=305).contains(&p3) || p2 == 38 || p2 == 39)
        && (14..=19).contains(&len)
    {
        Brand::Diners
    } else {
        return None;
    })
}

/// Checks an expiry: month 1–12, not in the past, at most 20 years ahead.
pub fn check_expiry(month: i64, year: i64, now: time::OffsetDateTime) -> Result<(), &'static str> {
    if !(1..=12).contains(&month) {
        return Err("exp_month must be 1 to 12");
    }
    let (this_year, this_month) = (i64::from(now.year()), i64::from(now.month() as u8));
    if year < this_year || (year == this_year && month < this_month) {
        return Err("the card has expired");
    }
    if year > this_year + 20 {
        return Err("exp_year is too far in the future");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_parse_with_their_brand() {
        for (number, brand) in [
            ("4111 1111 1111 1111", Brand::Visa),
            ("4242-4242-4242-4242", Brand::Visa),
            ("5555555555554444", Brand::Mastercard),
            ("2223003122003222", Brand::Mastercard),
            ("378282246310005", Brand::Amex),
            ("6011111111111117", Brand::Discover),
            ("3566002020360505", Brand::Jcb),
            ("6200000000000005", Brand::UnionPay),
            ("36227206271667", Brand::Diners),
        ] {
            let pan = Pan::parse(number).unwrap_or_else(|e| panic!("{number}: {e}"));
            assert_eq!(pan.brand(), brand, "{number}");
        }
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!((pan.bin(), pan.last4()), ("411111", "1111"));
        assert_eq!(format!("{pan:?} {pan}"), "Pan(411111…1111) 411111…1111");
    }

    #[test]
    fn bad_numbers_are_refused_without_echo() {
        assert_eq!(Pan::parse("4111111111111112"), Err(PanError::Luhn));
        assert_eq!(Pan::parse("4111-1111-1111-111x"), Err(PanError::NotDigits));
        assert_eq!(Pan::parse("41111111111"), Err(PanError::Length));
        assert_eq!(Pan::parse(&"4".repeat(40)), Err(PanError::Length));
        assert_eq!(Pan::parse("9999999999999995"), Err(PanError::UnknownBrand));
        assert_eq!(Pan::parse(""), Err(PanError::Length));
        assert_eq!(Pan::parse("٤١١١١١١١١١١١١١١١"), Err(PanError::NotDigits));
        assert!(!PanError::Luhn.to_string().contains("4111"));
    }

    #[test]
    fn expiry() {
        let now = time::macros::datetime!(2026-11-23 0:00 UTC);
        assert!(check_expiry(11, 2026, now).is_ok());
        assert!(check_expiry(10, 2026, now).is_err());
        assert!(check_expiry(13, 2027, now).is_err());
        assert!(check_expiry(1, 2047, now).is_err());
    }
}
