//! Our own rule: a card number never travels in a URL or a header, where proxies, logs
//! and browser histories keep it. A run of 13 to 19 digits (spaces or dashes allowed
//! between them) that starts like a card (2 to 6, the major networks' industry digits) and
//! passes the Luhn check is refused before any handler or log sees the request.

use http::HeaderMap;

/// Whether `text` holds something that looks like a card number.
pub fn contains_card_number(text: &[u8]) -> bool {
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    // Lengths of the digit groups between separators: a card is written as one run or
    // in its printed grouping, which is what keeps UUIDs (8-4-4-4-12 hex) and other
    // dashed identifiers from matching.
    let mut groups: Vec<usize> = Vec::with_capacity(5);
    let mut group = 0usize;
    let mut last_was_separator = false;
    // A card number stands alone: a run touching a letter or digit on either side is
    // part of a longer token (a UUID's digit-only stretch, a hex id), not a card.
    let mut starts_clean = false;
    let mut prev = 0u8;
    // The trailing NUL ends the last run without touching it.
    for &b in text.iter().chain(std::iter::once(&0u8)) {
        match b {
            b'0'..=b'9' => {
                if digits.is_empty() {
                    starts_clean = !prev.is_ascii_alphanumeric();
                }
                digits.push(b);
                group += 1;
                last_was_separator = false;
            }
            b' ' | b'-' if !digits.is_empty() && !last_was_separator => {
                groups.push(group);
                group = 0;
                last_was_separator = true;
            }
            _ => {
                if group > 0 {
                    groups.push(group);
                }
                let ends_clean = last_was_separator || !b.is_ascii_alphanumeric();
                if starts_clean && ends_clean && looks_like_card(&digits, &groups) {
                    return true;
                }
                digits.clear();
                groups.clear();
                group = 0;
                last_was_separator = false;
            }
        }
        prev = b;
    }
    false
}

fn printed_grouping(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        // Amex 4-6-5, Diners 4-6-4.
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

fn looks_like_card(digits: &[u8], groups: &[usize]) -> bool {
    (13..=19).contains(&digits.len())
        && (b'2'..=b'6').contains(&digits[0])
        && printed_grouping(groups)
        && luhn(digits)
}

/// The Luhn check over ASCII digits (the vault's card parser uses it too).
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.iter().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Percent-decodes (`+` as space), so `4111%201111…` is seen as digits.
fn decoded(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Where a card number was found, if anywhere: `"url"` or `"header"`.
pub fn find_in_request(path_and_query: &str, headers: &HeaderMap) -> Option<&'static str> {
    if contains_card_number(&decoded(path_and_query)) {
        return Some("url");
    }
    headers
        .values()
        .any(|v| contains_card_number(v.as_bytes()))
        .then_some("header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cards_and_leaves_other_numbers_alone() {
        for hit in [
            "4111111111111111",
            "/pay?card=4111 1111 1111 1111",
            "n=4111-1111-1111-1111&x=1",
            "378282246310005",
            "3782 822463 10005",
            "5555555555554444",
        ] {
            assert!(contains_card_number(&decoded(hit)), "{hit}");
        }
        assert!(
            find_in_request("/pay?card=4111%201111%201111%201111", &HeaderMap::new()).is_some()
        );
        assert!(find_in_request("/pay?card=4111+1111+1111+1111", &HeaderMap::new()).is_some());
        for miss in [
            "4111111111111112", // Luhn fails
            "1732000000000001", // a millisecond timestamp: no card starts with 1
            "/api/v1/tenants/0190a4c1-7b2e-7c3d-9e1f-0123456789ab",
            "41111111111",          // too short
            "41111111111111111111", // too long
            "4111--1111111111111",
            // A UUID whose groups happen to be all digits, Luhn-valid as a run.
            "41111111-1111-1111",
            "/api/v1/tenants/01934567-4111-1111-1111-111111111111/users",
            // Groups 2 to 4 and the start of group 5 all digits (seen in CI): 16
            // Luhn-valid digits in card grouping, but inside a longer token.
            "/api/v1/tenants/0193456a-4111-1111-1111-1111abcdef12/users",
            "id=ab4111111111111111",
            "id=4111111111111111cd",
        ] {
            assert!(!contains_card_number(&decoded(miss)), "{miss}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-card", "4111111111111111".parse().unwrap());
        assert_eq!(find_in_request("/", &headers), Some("header"));
    }
}
