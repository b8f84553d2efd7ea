//! The typo generator for measuring the classifier on text typed in a hurry
//! on a phone: neighbouring keys on the Russian ЙЦУКЕН layout, swapped,
//! dropped and doubled letters, ё and й typed as е and и. Deterministic for a
//! text and a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The ЙЦУКЕН letter rows, for neighbouring keys.
const ROWS: [&str; 3] = ["йцукенгшщзхъ", "фывапролджэ", "ячсмитьбю"];

/// Letters next to `c` on the keyboard (same row, and the rows above and below).
fn neighbours(c: char) -> Vec<char> {
    let rows: Vec<Vec<char>> = ROWS.iter().map(|r| r.chars().collect()).collect();
    let Some((r, i)) = rows
        .iter()
        .enumerate()
        .find_map(|(r, row)| row.iter().position(|&x| x == c).map(|i| (r, i)))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (dr, di) in [(0i32, -1i32), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)] {
        let rr = r as i32 + dr;
        let ii = i as i32 + di;
        if rr >= 0 && (rr as usize) < rows.len() && ii >= 0 {
            if let Some(&n) = rows[rr as usize].get(ii as usize) {
                out.push(n);
            }
        }
    }
    out
}

/// `text` with about `rate` typos per letter (0.11 is one in nine).
pub fn with_typos(text: &str, rate: f64, seed: u64) -> String {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = StdRng::seed_from_u64(h);
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let lower = c.to_lowercase().next().unwrap_or(c);
        if !c.is_alphabetic() || !rng.random_bool(rate.clamp(0.0, 1.0)) {
            out.push(c);
            i += 1;
            continue;
        }
        let keep_case = |x: char| {
            if c.is_uppercase() {
                x.to_uppercase().next().unwrap_or(x)
            } else {
                x
            }
        };
        match (lower, rng.random_range(0..4)) {
            ('ё', _) => out.push(keep_case('е')),
            ('й', _) => out.push(keep_case('и')),
            (_, 0) => {
                let n = neighbours(lower);
                if n.is_empty() {
                    out.push(c);
                } else {
                    out.push(keep_case(n[rng.random_range(0..n.len())]));
                }
            }
            (_, 1) if i + 1 < chars.len() && chars[i + 1].is_alphabetic() => {
                out.push(chars[i + 1]);
                out.push(c);
                i += 1;
            }
            (_, 2) => {}
            _ => {
                out.push(c);
                out.push(c);
            }
        }
        i += 1;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_adjacent_keys() {
        let n = neighbours('к');
        assert!(n.contains(&'у') && n.contains(&'е') && n.contains(&'а'));
        assert!(!n.contains(&'я'));
    }

    #[test]
    fn typos_come_at_about_the_rate_and_repeat_for_a_seed() {
        let text = "Как оформить ежемесячную выплату на ребёнка от трёх до семи лет";
        assert_eq!(with_typos(text, 0.11, 1), with_typos(text, 0.11, 1));
        assert_eq!(with_typos(text, 0.0, 1), text);
        let changed = (0..50)
            .filter(|s| with_typos(text, 0.11, *s) != text)
            .count();
        assert!(changed >= 45, "{changed}");
        assert_eq!(with_typos("ёй", 1.0, 3), "еи");
    }
}
